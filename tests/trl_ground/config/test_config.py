"""The configuration through the real parser: shipped configs, defaults, aliases, checks."""

import json

import pytest

from rewards import ScoringSettings
from tests.helpers import REPO
from trl_ground.config import DataArguments, GroundingGRPOConfig, GroundingSFTConfig, ModelArguments, parse_args

SFT_CONFIGS = ["qlora", "lora16", "full", "demo"]
GRPO_CONFIGS = ["grpo", "grpo_demo"]


@pytest.mark.parametrize("name", SFT_CONFIGS + GRPO_CONFIGS)
def test_every_shipped_config_parses(name):
    config_class = GroundingGRPOConfig if name in GRPO_CONFIGS else GroundingSFTConfig
    data, model, scoring, cfg = parse_args(["--config", str(REPO / "configs" / f"{name}.yaml")], config_class=config_class)
    assert isinstance(data, DataArguments) and isinstance(model, ModelArguments) and isinstance(scoring, ScoringSettings)
    assert isinstance(cfg, config_class) and data.img_root and cfg.learning_rate > 0
    assert model.load_in_4bit == (name in ("qlora", "grpo")) and model.use_lora == (name not in ("full", "demo"))
    if config_class is GroundingSFTConfig:
        assert cfg.grounding_gradient == "policy_gradient"
    else:
        assert cfg.rewards == ["grounding", "format"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--lora-r", "0"), "lora_r"),
        (("--grounding-gradient", "sometimes"), "grounding_gradient"),
        (("--num-generations", "0"), "num_generations"),
        (("--no-use-lora", "--load-in-4bit", "true"), "load_in_4bit needs use_lora"),
        (("--iou-loss-weight", "-1"), "iou_loss_weight"),
        (("--match-method", "random"), "method"),
        (("--prompt-mode", "everything"), "prompt_mode"),
        (("--lr", "-1"), "learning_rate"),
        (("--policy-loss-type", "bnpo"), "policy_loss_type"),
        (("--policy-loss-weight", "-0.5"), "policy_loss_weight"),
        (("--tile-size", "512", "--tile-overlap", "512"), r"tile overlap \(512 px\) must be smaller than the tile size"),
        (("--tile-size", "512", "--tile-min-visible", "1.5"), r"must lie in \(0, 1\]"),
    ],
)
def test_bad_values_fail_before_loading(extra, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        parse_args(["--config", str(REPO / "configs/demo.yaml"), "--output-dir", str(tmp_path), *extra])


def test_unknown_yaml_key_and_cli_flag_fail(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: x\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_args(["--config", str(cfg)])
    with pytest.raises(ValueError, match="--no-such-flag"):
        parse_args(["--no-such-flag", "1"])
    with pytest.raises(ValueError, match="--max-step"):  # a typo is not taken for --max-steps
        parse_args(["--max-step", "3"])


def test_reference_script_flags_and_defaults():
    _, model, _, cfg = parse_args(["--batch-size", "3", "--epochs", "2", "--lora-r", "8", "--no-use-lora", "--no-load-in-4bit"])
    assert (cfg.per_device_train_batch_size, cfg.num_train_epochs, model.lora_r, model.use_lora) == (3, 2, 8, False)
    assert cfg.learning_rate == 2e-5  # full fine-tuning default
    _, model, scoring, cfg = parse_args([])
    assert model.model == "unsloth/Qwen3-VL-8B-Instruct" and model.use_lora and model.load_in_4bit
    assert (cfg.per_device_train_batch_size, cfg.num_train_epochs, cfg.learning_rate) == (2, 3, 2e-4)
    assert (model.lora_r, model.lora_alpha, model.lora_dropout) == (16, 16, 0.0)
    assert scoring == ScoringSettings()
    assert (scoring.iou_loss_weight, scoring.fp_loss_weight, scoring.fn_loss_weight) == (1.0, 0.5, 1.0)
    assert (cfg.gradient_accumulation_steps, cfg.save_steps, cfg.logging_steps) == (4, 100, 10)
    assert parse_args(["--lr", "0.01"])[3].learning_rate == 0.01
    assert parse_args(["--lr=0.02"])[3].learning_rate == 0.02
    assert parse_args(["--model_name_or_path", "x/y"])[1].model == "x/y"


def test_policy_term_flags_the_learning_benchmark_passes(tmp_path):
    flags = ["--policy-loss-type", "dapo", "--policy-loss-weight", "0.25", "--drop-flat-groups", "false", "--shuffle-advantages", "true"]
    flags += ["--credit", "sequence", "--cost", "counts", "--num-generations", "8"]
    _, _, scoring, cfg = parse_args(["--output-dir", str(tmp_path), *flags])
    assert (cfg.policy_loss_type, cfg.policy_loss_weight, cfg.drop_flat_groups, cfg.shuffle_advantages) == ("dapo", 0.25, False, True)
    assert (cfg.credit, scoring.cost, cfg.num_generations) == ("sequence", "counts", 8)
    _, _, _, default = parse_args(["--output-dir", str(tmp_path)])
    policy = (default.policy_loss_type, default.policy_loss_weight, default.drop_flat_groups, default.shuffle_advantages)
    assert policy == ("dr_grpo", 1.0, True, False)


def test_yaml_accepts_reference_names(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"batch_size": 5, "lr": 0.003, "epochs": 1, "iou_loss_weight": 2.0}))
    _, _, scoring, c = parse_args(["--config", str(cfg)])
    assert (c.per_device_train_batch_size, c.learning_rate, c.num_train_epochs) == (5, 0.003, 1)
    assert scoring.iou_loss_weight == 2.0


def test_grpo_config_checks_reward_names_and_weights():
    with pytest.raises(ValueError, match=r"valid names: \['f1', 'fn', 'format', 'fp', 'grounding', 'iou'\]"):
        parse_args(["--rewards", "grounding", "accuracy"], config_class=GroundingGRPOConfig)
    with pytest.raises(ValueError, match="reward_weights"):
        parse_args(["--rewards", "grounding", "--reward-weights", "1", "2"], config_class=GroundingGRPOConfig)
    *_, cfg = parse_args(["--rewards", "iou", "format"], config_class=GroundingGRPOConfig)
    assert cfg.rewards == ["iou", "format"] and cfg.per_device_train_batch_size == 2


def test_python_construction_keeps_trl_defaults_and_the_checks():
    cfg = GroundingSFTConfig(output_dir="x", report_to="none")
    assert cfg.remove_unused_columns is False and cfg.bf16 is False  # no GPU here
    with pytest.raises(ValueError, match="remove_unused_columns"):
        GroundingSFTConfig(output_dir="x", remove_unused_columns=True)


def test_quiet_by_default(tiny_model_dir):
    """No FutureWarning of the gradient -> activation checkpointing renames from our calls, and
    no pinned memory (torch's warning) without a GPU."""
    import warnings

    import torch
    from transformers import AutoModelForImageTextToText

    from trl_ground.model.compat import enable_activation_checkpointing, silence_checkpointing_renames

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_checkpointing_renames()  # what trl_ground.config.training installs at import
        _, _, _, cfg = parse_args(["--config", str(REPO / "configs/demo.yaml"), "--gradient-checkpointing", "true"])
        model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
        enable_activation_checkpointing(model)
        assert model.is_gradient_checkpointing  # as PEFT and TRL read it
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    assert cfg.dataloader_pin_memory == torch.cuda.is_available()


def test_a_16bit_model_comes_with_activation_checkpointing_when_asked(tiny_model_dir):
    """The QLoRA path always had it; the 16-bit path relied on Trainer.train(), so a step
    run outside train() (the step benchmark) measured 16-bit LoRA without it."""
    from trl_ground.config import ModelArguments
    from trl_ground.model.loading import load_model

    for flag in (True, False):
        model = load_model(ModelArguments(model=str(tiny_model_dir), load_in_4bit=False, lora_r=4), gradient_checkpointing=flag)
        assert model.is_gradient_checkpointing is flag
