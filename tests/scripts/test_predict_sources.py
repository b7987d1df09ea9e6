"""trl-ground-predict takes what a run writes: a LoRA run's final/ and checkpoint-N (adapters,
loaded on the base their adapter_config.json names, or on --base-model), its final_merged/."""

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import one_line_error
from trl_ground.cli.predict_bbox import main as predict_main
from trl_ground.model.source import ModelSource, is_adapter_dir, resolve_model_source


def predict_args(model, synthetic_data, out, *extra):
    _, test, root = synthetic_data
    return ["--model", str(model), "--test-json", str(test), "--img-root", str(root), "--out", str(out),
            "--max-new-tokens", "6", "--batch-size", "16", *map(str, extra)]


@pytest.mark.parametrize("folder", ["final", "checkpoint-1"])
def test_predict_takes_a_lora_runs_adapter_folders(folder, lora_run, synthetic_data, tmp_path, capsys):
    assert is_adapter_dir(lora_run / folder)
    assert predict_main(predict_args(lora_run / folder, synthetic_data, tmp_path / "out.json")) == 0
    assert json.loads((tmp_path / "out.json").read_text())
    assert "error" not in capsys.readouterr().err


def test_adapters_agree_with_their_merged_model(lora_run, synthetic_data, tmp_path):
    assert predict_main(predict_args(lora_run / "final", synthetic_data, tmp_path / "a.json")) == 0
    assert predict_main(predict_args(lora_run / "final_merged", synthetic_data, tmp_path / "b.json")) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert [r["answer"] for r in a] == [r["answer"] for r in b]


def test_the_base_comes_from_adapter_config_and_base_model_overrides_it(lora_run, tiny_model_dir, tmp_path):
    base = json.loads((lora_run / "final" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert resolve_model_source(str(lora_run / "final")) == ModelSource(base, str(lora_run / "final"))
    moved = tmp_path / "base"
    shutil.copytree(tiny_model_dir, moved)
    assert resolve_model_source(str(lora_run / "final"), base_model=str(moved)).base == str(moved)


def test_an_unreachable_base_is_one_line_naming_the_path_and_base_model(lora_run, synthetic_data, tmp_path, capsys):
    adapters = tmp_path / "final"
    shutil.copytree(lora_run / "final", adapters)
    config = json.loads((adapters / "adapter_config.json").read_text())
    (adapters / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "./moved/away"}))
    line = one_line_error(capsys, predict_main, predict_args(adapters, synthetic_data, tmp_path / "o.json"),
                          "./moved/away", "is not found: tried", "--base-model")
    assert f"tried {Path.cwd() / 'moved' / 'away'}" in line  # relative to where the command runs
    (adapters / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "someone/not-downloaded"}))
    one_line_error(capsys, predict_main, predict_args(adapters, synthetic_data, tmp_path / "o.json"),
                   "base model someone/not-downloaded is not in the local Hugging Face cache", "--base-model")
    one_line_error(capsys, predict_main, predict_args(adapters, synthetic_data, tmp_path / "o.json", "--base-model", tmp_path / "nope"),
                   "given by --base-model", "nope")


def test_contradictory_model_options(lora_run, tiny_model_dir, synthetic_data, tmp_path, capsys):
    one_line_error(capsys, predict_main, predict_args(lora_run / "final", synthetic_data, tmp_path / "o.json", "--adapter", lora_run / "final"),
                   "holds LoRA adapters, and --adapter")
    one_line_error(capsys, predict_main, predict_args(tiny_model_dir, synthetic_data, tmp_path / "o.json", "--base-model", tiny_model_dir),
                   "--base-model is for LoRA adapters")
