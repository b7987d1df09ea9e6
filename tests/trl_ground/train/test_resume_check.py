"""Resuming with another setup is one line saying what differs, before anything loads."""

import json
import shutil

import pytest

from tests.helpers import tiny_run_argv
from trl_ground.cli.sft_ground import main as sft_main
from trl_ground.config import ModelArguments
from trl_ground.train.resume_check import check_resume_setup, setup_differences
from trl_ground.train.run_errors import OutputError


def lora_args(model, **changes):
    return ModelArguments(model=str(model), load_in_4bit=False, **changes)


def test_same_setup_resumes(lora_run, tiny_model_dir):
    assert setup_differences(lora_run / "checkpoint-1", lora_args(tiny_model_dir)) == []
    check_resume_setup(lora_run / "checkpoint-1", lora_args(tiny_model_dir))


def test_lora_settings_that_differ_are_named(lora_run, tiny_model_dir):
    diffs = setup_differences(lora_run / "checkpoint-1", lora_args(tiny_model_dir, lora_r=8, lora_alpha=32, finetune_vision_layers=True))
    assert diffs == ["lora_r 16 in the checkpoint, 8 here", "lora_alpha 16 in the checkpoint, 32 here",
                     "finetune_vision_layers false in the checkpoint, true here"]


def test_lora_against_full_either_way(lora_run, tiny_model_dir, tmp_path):
    with pytest.raises(OutputError, match=r"holds LoRA adapters \(r 16\) and this run trains every weight \(use_lora false\)"):
        check_resume_setup(lora_run / "checkpoint-1", ModelArguments(model=str(tiny_model_dir), use_lora=False, load_in_4bit=False))
    full = tmp_path / "checkpoint-3"
    shutil.copytree(tiny_model_dir, full)
    with pytest.raises(OutputError, match=r"holds a fully fine-tuned model and this run trains LoRA adapters"):
        check_resume_setup(full, lora_args(tiny_model_dir))


def test_a_full_model_of_another_size(tiny_model_dir, tmp_path):
    full = tmp_path / "checkpoint-3"
    shutil.copytree(tiny_model_dir, full)
    config = json.loads((full / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] += 1
    (full / "config.json").write_text(json.dumps(config))
    full_args = ModelArguments(model=str(tiny_model_dir), use_lora=False, load_in_4bit=False)
    layers = config["text_config"]["num_hidden_layers"]
    assert setup_differences(full, full_args) == [f"text_config.num_hidden_layers {layers} in the checkpoint, {layers - 1} in {tiny_model_dir}"]


def test_resume_command_with_another_setup_is_one_line(lora_run, tiny_model_dir, synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(lora_run, out)
    argv = tiny_run_argv(tiny_model_dir, synthetic_data, out, "--resume-from-checkpoint", str(out / "checkpoint-1"), "--max-steps", "3")
    assert sft_main(argv) == 2  # the demo config trains every weight; the checkpoint holds adapters
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot resume {out / 'checkpoint-1'}: it was written with another setup"), err
    assert len(err) < 400
