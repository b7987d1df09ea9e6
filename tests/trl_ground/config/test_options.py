"""One name and one default per option: TRL's names with the old ones as aliases (YAML, CLI,
Python, each with its notice), the parser adding no defaults, the performance switches in
their own object, and a warning line for each option a run cannot honour."""

import json
import logging
import warnings
from dataclasses import asdict, fields

import pytest

from rewards import ScoringSettings
from tests.helpers import REPO
from trl_ground.config import RENAMED, GroundingGRPOConfig, GroundingSFTConfig, PerformanceSettings, parse_args
from trl_ground.config.parser import GroundingParser
from trl_ground.config.renamed import RenamedOptionWarning
from trl_ground.config.training import default_learning_rate

# an old name, a value other than the default, the new name
OLD_VALUES = {"samples_per_prompt": 3, "sample_temperature": 0.7, "sample_max_new_tokens": 64, "sampler_importance_clip_max": 2.0}


def renamed_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RenamedOptionWarning)]


def test_the_rename_table_is_the_published_one():
    assert set(OLD_VALUES) == set(RENAMED)
    assert RENAMED == {
        "samples_per_prompt": "num_generations",
        "sample_temperature": "temperature",
        "sample_max_new_tokens": "max_completion_length",
        "sampler_importance_clip_max": "vllm_importance_sampling_clip_max",
    }


@pytest.mark.parametrize("old", sorted(OLD_VALUES))
@pytest.mark.parametrize("where", ["python", "cli_dashes", "cli_underscores", "yaml"])
def test_an_old_name_works_with_a_notice(old, where, tmp_path):
    new, value = RENAMED[old], OLD_VALUES[old]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if where == "python":
            cfg = GroundingSFTConfig(output_dir=str(tmp_path), report_to="none", **{old: value})
        elif where == "yaml":
            path = tmp_path / "c.yaml"
            path.write_text(json.dumps({old: value}))
            cfg = parse_args(["--config", str(path), "--output-dir", str(tmp_path)])[3]
        else:
            flag = f"--{old.replace('_', '-')}" if where == "cli_dashes" else f"--{old}"
            cfg = parse_args([flag, str(value), "--output-dir", str(tmp_path)])[3]
    assert getattr(cfg, new) == value and getattr(cfg, old) is None
    (notice,) = renamed_warnings(caught)
    assert f"{old} " in notice and f"now {new} " in notice and "\n" not in notice


def test_both_names_with_different_values_are_an_error(tmp_path):
    message = "samples_per_prompt is the old name of num_generations, and both are given with different values"
    with pytest.raises(ValueError, match=message):
        parse_args(["--samples-per-prompt", "3", "--num-generations", "2"])
    with pytest.raises(ValueError, match=message):  # the new name at its default: only the parser can tell it was given
        parse_args(["--samples-per-prompt", "3", "--num-generations", "1"])
    both = tmp_path / "both.yaml"
    both.write_text(json.dumps({"samples_per_prompt": 3, "num_generations": 2}))
    with pytest.raises(ValueError, match=message):
        parse_args(["--config", str(both)])
    with pytest.raises(ValueError, match="sample_temperature is the old name of temperature"):
        GroundingSFTConfig(output_dir=str(tmp_path), report_to="none", sample_temperature=0.5, temperature=0.9)
    # the same value under both names is no conflict
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RenamedOptionWarning)
        assert parse_args(["--samples-per-prompt", "3", "--num-generations", "3"])[3].num_generations == 3
        assert GroundingSFTConfig(output_dir=str(tmp_path), report_to="none", samples_per_prompt=2, num_generations=2).num_generations == 2


def test_a_flag_overrides_the_config_file_under_either_name(tmp_path):
    old_file, new_file = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_file.write_text(json.dumps({"samples_per_prompt": 3}))
    new_file.write_text(json.dumps({"num_generations": 2, "max_completion_length": 48}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RenamedOptionWarning)
        assert parse_args(["--config", str(old_file), "--num-generations", "2"])[3].num_generations == 2
        config = parse_args(["--config", str(new_file), "--samples-per-prompt", "3", "--sample-max-new-tokens", "16"])[3]
    assert (config.num_generations, config.max_completion_length) == (3, 16)


def test_the_command_prints_the_notice_as_one_line(capsys, tmp_path):
    from trl_ground.cli.sft_ground import main

    assert main(["--config", str(REPO / "configs/demo.yaml"), "--samples-per-prompt", "2", "--max-steps", "0",
                 "--output-dir", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    notices = [line for line in lines if "samples_per_prompt" in line]
    assert notices == ["warning: samples_per_prompt (--samples-per-prompt) is now num_generations (--num-generations), "
                       "TRL's name; the old name still works for now"]
    assert lines[-1].startswith("error: max_steps must be > 0")


@pytest.mark.parametrize("config_class", [GroundingSFTConfig, GroundingGRPOConfig])
def test_python_defaults_are_the_command_line_defaults(config_class):
    """``GroundingSFTConfig()`` is what ``trl-ground-sft`` uses with no flags, field by field:
    the parser adds no defaults. What depends on another group (the learning rate: LoRA or not)
    is resolved after parsing, the same way for both."""
    parser = GroundingParser(config_class)
    data, model, scoring, *nested, parsed = parser.parse_args_and_config([])
    python = config_class()
    differ = [f.name for f in fields(config_class) if f.name != "logging_dir" and getattr(parsed, f.name) != getattr(python, f.name)]
    assert differ == []
    assert [asdict(n) for n in nested] == ([asdict(python.performance)] if config_class is GroundingSFTConfig else [])
    assert python.learning_rate is None and python.per_device_train_batch_size == 2 and python.gradient_accumulation_steps == 4
    resolved = parse_args([], config_class=config_class)[3]
    assert resolved.learning_rate == default_learning_rate(model.use_lora) == 2e-4


def test_performance_switches_are_one_object():
    cfg = parse_args(["--pack-samples", "true", "--sampler", "generate"])[3]
    assert cfg.performance == PerformanceSettings(sampler="generate", pack_samples=True)
    assert GroundingSFTConfig().performance == PerformanceSettings()
    assert GroundingSFTConfig(performance={"pack_samples": True}).performance.pack_samples
    assert GroundingSFTConfig(performance=PerformanceSettings(sampler="generate")).performance.sampler == "generate"
    assert json.loads(GroundingSFTConfig().to_json_string())["performance"] == asdict(PerformanceSettings())
    with pytest.raises(ValueError, match="sampler must be one of"):
        parse_args(["--sampler", "fast"])
    with pytest.raises(ValueError, match="needs sampler='static'"):
        PerformanceSettings(sampler="generate", sampler_merged_weights=True)
    with pytest.raises(ValueError, match="unknown option --performance"):
        parse_args(["--performance", "{}"])


def test_benchmark_settings_read_their_old_names():
    from trl_ground.config.benchmark import LearningBenchSettings

    with pytest.warns(FutureWarning, match="samples_per_prompt is now num_generations"):
        s = LearningBenchSettings().override(["samples_per_prompt=3"])
    assert s.num_generations == 3
    with pytest.warns(FutureWarning, match="max_new_tokens is now max_completion_length"):
        old = {**LearningBenchSettings().as_dict(), "max_new_tokens": 50}
        del old["max_completion_length"]
        assert LearningBenchSettings.from_dict(old).max_completion_length == 50


# ---- the trainer's fallbacks: one warning line each ---------------------------------------
@pytest.fixture(scope="module")
def parts(tiny_model_dir, synthetic_data, tmp_path_factory):
    """Dataset, processor and collator of the tiny model (the model is loaded per test)."""
    from trl_ground.data.collator import GroundingCollator
    from trl_ground.train.job import load_data_and_model

    train, test, root = synthetic_data
    data, model_args, _, config = parse_args([
        "--config", str(REPO / "configs/demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0",
        "--output-dir", str(tmp_path_factory.mktemp("run")),
    ])
    train_ds, _, processor, _ = load_data_and_model(data, model_args, config)
    return train_ds, processor, GroundingCollator(processor, config.max_length)


def build(parts, tiny_model_dir, tmp_path, scoring=None, **options):
    from transformers import AutoModelForImageTextToText

    from trl_ground.train.trainer import GroundingSFTTrainer

    train_ds, processor, collator = parts
    config = GroundingSFTConfig(output_dir=str(tmp_path), report_to="none", **options)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    return GroundingSFTTrainer(model=model, args=config, scoring=scoring, train_dataset=train_ds, processing_class=processor,
                               data_collator=collator)


def fallback_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trl_ground.train.trainer" and r.levelno == logging.WARNING]


def test_a_trainer_from_its_config_alone_runs_quietly(parts, tiny_model_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="trl_ground.train.trainer"):
        trainer = build(parts, tiny_model_dir, tmp_path)
    assert fallback_lines(caplog) == []
    assert trainer.args.learning_rate == default_learning_rate(use_lora=False)  # no PEFT model: full fine-tuning's


def test_box_credit_without_the_dense_cost_says_so(parts, tiny_model_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="trl_ground.train.trainer"):
        build(parts, tiny_model_dir, tmp_path, scoring=ScoringSettings(cost="counts"))
    (line,) = fallback_lines(caplog)
    assert line.startswith("credit='box' falls back to 'sequence'") and "cost is 'counts'" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trl_ground.train.trainer"):
        build(parts, tiny_model_dir, tmp_path, scoring=ScoringSettings(cost="counts"), credit="sequence")
    assert fallback_lines(caplog) == []


def test_another_sft_loss_with_the_grounding_loss_is_refused(parts, tiny_model_dir, tmp_path):
    """The step computes TRL's plain NLL loss in its fused pass (there is no second route)."""
    with pytest.raises(ValueError, match="cannot combine with loss_type='dft'"):
        build(parts, tiny_model_dir, tmp_path, loss_type="dft")
    build(parts, tiny_model_dir, tmp_path / "sft", loss_type="dft", grounding_loss=False)
