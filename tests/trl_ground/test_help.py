"""The --help table of the trainer configs cannot drift from the configs; 'did you mean'."""

from trl_ground.config.help import GROUPS, generate_table, option_names
from trl_ground.config.suggest import did_you_mean, unknown_flags_message, unknown_keys_message
from trl_ground.config.trainer_fields import TRAINER_FIELDS


def test_the_static_table_matches_the_trainer_configs():
    """Fails when a trainer config field, its default or help, or a parser default changes
    without `python -m trl_ground.config.help --write-table`."""
    assert generate_table() == TRAINER_FIELDS


def test_every_own_field_of_the_trainer_configs_has_a_group():
    for kind, entry in TRAINER_FIELDS.items():
        shown = set(option_names(kind))
        assert set(entry["own"]) <= shown, set(entry["own"]) - shown
        assert len(option_names(kind)) == len(shown), "a field listed twice"
    assert [title for title, _ in GROUPS["sft"]][:3] == ["model", "LoRA", "data"]


def test_did_you_mean():
    known = ["lora_r", "lora_alpha", "lora_dropout", "iou_loss_weight", "fp_loss_weight", "train_json"]
    assert did_you_mean("lora_rr", known)[0] == "lora_r"
    assert did_you_mean("--Train-Json", known) == ["train_json"]
    assert did_you_mean("completely_different", known) == []
    assert unknown_keys_message(["lora_rr"], known).startswith("unknown key in the config file: 'lora_rr' (did you mean lora_r")
    message = unknown_flags_message(["--iou-los-weight", "2", "--zzz"], known)
    assert message.startswith("unknown options --iou-los-weight (did you mean --iou-loss-weight")
    assert message.endswith("; --zzz (--help lists the options)")
    assert "did you mean --config x.yaml" in unknown_flags_message(["x.yaml"], known)


def test_every_field_of_the_light_argument_groups_is_in_the_help():
    from dataclasses import fields

    from rewards import ScoringSettings
    from trl_ground.config import DataArguments, ModelArguments
    from trl_ground.config.help import option_names

    for kind in ("sft", "grpo"):
        shown = set(option_names(kind))
        for dtype in (DataArguments, ModelArguments, ScoringSettings):
            assert {f.name for f in fields(dtype)} <= shown, (kind, dtype.__name__)
