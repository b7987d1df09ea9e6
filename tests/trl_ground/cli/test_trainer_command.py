"""What trl-ground-sft and trl-ground-grpo share: help, the checks before TRL, the parse and
the run (trl_ground/cli/trainer_command.py); no training here (the run is replaced)."""

import pytest

from tests.helpers import DEMO, REPO
from trl_ground.cli.trainer_command import run_trainer_command


def test_help_and_an_empty_command_line(capsys):
    assert run_trainer_command(["--help"], "sft", "Train it.") == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trl-ground-sft") and "Train it." in out and "every option" not in out
    assert run_trainer_command([], "grpo", "") == 2
    assert capsys.readouterr().err == (
        "error: nothing to do: give a config (e.g. trl-ground-grpo --config configs/demo.yaml); --help lists the options\n")


def test_a_misspelt_option_or_key_raises_before_the_parse(tmp_path):
    with pytest.raises(ValueError, match="unknown option --lora-rr"):
        run_trainer_command(["--config", DEMO, "--lora-rr", "3"], "sft", "")
    (tmp_path / "typo.yaml").write_text("lora_rr: 8\n")
    with pytest.raises(ValueError, match="unknown key in .*typo.yaml: 'lora_rr'"):
        run_trainer_command([f"--config={tmp_path / 'typo.yaml'}"], "sft", "")


@pytest.mark.parametrize("kind, module, runner", [("sft", "trl_ground.train.job", "run_sft"), ("grpo", "trl_ground.train.grpo", "run_grpo")])
def test_the_parsed_groups_go_to_the_kinds_run(monkeypatch, kind, module, runner):
    import importlib

    calls = []
    monkeypatch.setattr(importlib.import_module(module), runner, lambda *args, **kwargs: calls.append((args, kwargs)))
    config = REPO / "configs" / ("demo.yaml" if kind == "sft" else "grpo_demo.yaml")
    argv = [f"--config={config}", "--lora-r", "4", "--output-dir", "elsewhere"]
    assert run_trainer_command(argv, kind, "") == 0
    [(args, kwargs)] = calls
    data_args, model_args, scoring, config_obj = args
    assert model_args.lora_r == 4 and config_obj.output_dir == "elsewhere"
    assert type(config_obj).__name__ == ("GroundingSFTConfig" if kind == "sft" else "GroundingGRPOConfig")
    # the command line as the resume hint repeats it: --config=FILE split in two
    assert kwargs["command_line"] == [f"trl-ground-{kind}", "--config", str(config), "--lora-r", "4", "--output-dir", "elsewhere"]
