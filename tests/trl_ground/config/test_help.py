"""--help reads the dataclasses' fields (the trainer configs' from their source, without
importing TRL) and cannot drift from them; 'did you mean'."""

from dataclasses import MISSING, fields

import pytest

from trl_ground.config.help import GROUPS, LIGHT_GROUPS, format_help, option_names, option_rows
from trl_ground.config.renamed import RENAMED
from trl_ground.config.source_fields import NOT_LITERAL, class_chain, trainer_fields
from trl_ground.config.suggest import did_you_mean, unknown_flags_message, unknown_keys_message


def _config_class(kind):
    from trl_ground.config import GroundingGRPOConfig, GroundingSFTConfig

    return GroundingSFTConfig if kind == "sft" else GroundingGRPOConfig


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_the_source_reading_matches_the_imported_config(kind):
    """Every field, its default (where a literal) and its help, as the imported class has them;
    the chain of classes read is the class's own (its dataclass bases, subclass first)."""
    cls = _config_class(kind)
    chain = [(c.__module__, c.__name__) for c in cls.__mro__ if "__dataclass_fields__" in vars(c)]
    assert class_chain(kind) == chain
    read = trainer_fields(kind)
    real = {f.name: f for f in fields(cls)}
    assert set(read) == set(real)
    for name, f in real.items():
        default = f.default if f.default is not MISSING else f.default_factory() if f.default_factory is not MISSING else None
        if read[name].default is not NOT_LITERAL:
            assert read[name].default == default, name
        if read[name].help:  # "" where the help is computed (e.g. log_level's list of levels)
            assert read[name].help == f.metadata.get("help", ""), name
        assert read[name].init == f.init, name
    shown = [name for name in option_names(kind) if name in read]
    assert [name for name in shown if read[name].default is NOT_LITERAL] == []


def test_every_own_field_of_the_trainer_configs_has_a_group():
    """Every field a trainer config declares is shown once, but the old names of renamed options
    and the nested performance field (whose own fields are shown)."""
    for kind in ("sft", "grpo"):
        own = set(vars(_config_class(kind))["__annotations__"]) - set(RENAMED) - {"performance", "nested_settings"}
        shown = set(option_names(kind))
        assert own <= shown, own - shown
        assert len(option_names(kind)) == len(shown), "a field listed twice"
        assert not shown & set(RENAMED)
    assert [title for title, _ in GROUPS["sft"]][:3] == ["model", "LoRA", "data"]


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_help_lists_each_option_once_with_its_default(kind):
    text = format_help(kind, f"trl-ground-{kind}", "description", width=200)
    rows = option_rows(kind)
    for name in option_names(kind):
        flag = f"--{name.replace('_', '-')}"
        lines = [line for line in text.splitlines() if line.startswith("  --") and (f" {flag} " in f" {line} " or f"{flag}," in line)]
        assert len(lines) == 1, (name, lines)
        default = rows[name][1]
        entry = " ".join(text[text.index(lines[0]):].split("\n  --", 1)[0].split())
        if default not in ("None", ""):
            assert f"(default: {default[:20]}" in entry, name
    for old in RENAMED:
        assert f"--{old.replace('_', '-')} " not in text
    if kind == "sft":
        assert "(default: 1)" in " ".join(text.split("--num-generations", 1)[1].split("\n  --", 1)[0].split())


def test_help_does_not_import_trl():
    import subprocess
    import sys

    code = ("import sys; from trl_ground.config.help import format_help; format_help('sft', 'p', 'd'); "
            "format_help('grpo', 'p', 'd'); print('trl' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_choices_are_named_in_the_help():
    from trl_ground.config.training import CREDITS, GRADIENT_MODES, POLICY_LOSS_TYPES

    rows = option_rows("sft")
    for name, choices in (("credit", CREDITS), ("grounding_gradient", GRADIENT_MODES), ("policy_loss_type", POLICY_LOSS_TYPES)):
        assert all(choice in rows[name][2] for choice in choices), name


def test_the_light_groups_are_the_parsers():
    from trl_ground.config.parser import GroundingParser

    for kind in ("sft", "grpo"):
        assert tuple(GroundingParser(_config_class(kind)).dataclass_types[:-1]) == LIGHT_GROUPS[kind]


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
    for kind in ("sft", "grpo"):
        shown = set(option_names(kind))
        for dtype in LIGHT_GROUPS[kind]:
            assert {f.name for f in fields(dtype)} <= shown, (kind, dtype.__name__)


def test_a_switch_that_also_takes_auto_shows_its_values_and_its_rule():
    """The same before and after a parser resolved the fields' annotations (in place)."""
    from trl_ground.config.parser import GroundingParser

    for _ in range(2):
        text = " ".join(format_help("sft", "trl-ground-sft", "description", width=200).split())
        entry = text.split("--sampler-merged-weights [true|false|auto] ", 1)[1].split(" --", 1)[0]
        assert "auto: on for a LoRA model on one GPU" in entry and "0.5 GB per row" in entry and entry.endswith("(default: auto)")
        budget = text.split("--sampler-memory-budget-gb NUM ", 1)[1].split(" --", 1)[0]
        assert budget.endswith("(default: 16 with a 4-bit base, else the GPU's memory)")
        GroundingParser(_config_class("sft"))
