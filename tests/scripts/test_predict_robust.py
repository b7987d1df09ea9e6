"""predict_bbox.py with bad inputs and faults: one clear line for a missing model, bad images
skipped and listed, answers kept on a crash, output directories with the usual permissions."""

import json
import os
import shutil
import stat

import pytest
from PIL import Image

from tests.helpers import one_line_error
from trl_ground.cli.predict_bbox import main


@pytest.fixture()
def folder(synthetic_data, tmp_path):
    """4 good images, a JPEG cut in half and garbage named .png."""
    _, _, root = synthetic_data
    out = tmp_path / "images"
    out.mkdir()
    for path in sorted((root / "images").glob("*.png"))[:4]:
        shutil.copy(path, out / path.name)
    Image.open(out / path.name).convert("RGB").save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (out / "b_cut.jpg").write_bytes(data[: len(data) // 2])
    (out / "c_garbage.png").write_bytes(b"\x00garbage" * 100)
    return out


def args(model, out, *more):
    return ["--model", str(model), "--out", str(out), "--max-new-tokens", "4", "--batch-size", "2", *map(str, more)]


def test_missing_model_is_one_clear_line(tmp_path, capsys, tiny_model_dir):
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (32, 32)).save(root / "a.png")
    for model, extra, line in [
        ("runs/nothing/final_merged", [], "error: model directory not found: runs/nothing/final_merged"),
        (tmp_path / "nope", [], f"error: model directory not found: {tmp_path / 'nope'}"),
        (tmp_path, [], f"error: {tmp_path}: not a model directory (no config.json)"),
        (tiny_model_dir, ["--adapter", tmp_path / "no_adapter"], f"error: adapter directory not found: {tmp_path / 'no_adapter'}"),
    ]:
        assert main(args(model, tmp_path / "o.json", "--root", root, *extra)) == 2
        assert capsys.readouterr().err.splitlines() == [line]
    assert not (tmp_path / "o.json").exists()


def test_bad_images_in_a_folder_are_skipped_and_listed(tiny_model_dir, folder, tmp_path, capsys):
    out = tmp_path / "res" / "outputs.json"
    assert main(args(tiny_model_dir, out, "--root", folder, "--class", "ship", "--viz", tmp_path / "viz")) == 0
    results = json.loads(out.read_text())
    assert len(results) == 4 and all(r["num_tokens"] >= 1 for r in results)
    errors = json.loads((tmp_path / "res" / "outputs.errors.json").read_text())
    assert [os.path.basename(e["image_path"]) for e in errors] == ["b_cut.jpg", "c_garbage.png"]
    assert all(e["error"] for e in errors)
    err = capsys.readouterr().err
    assert err.count("warning: skipped") == 2 and "Traceback" not in err
    assert not (tmp_path / "res" / "outputs.json.partial").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "viz").stat().st_mode) == 0o777 & ~umask
    assert len(list((tmp_path / "viz").glob("*.png"))) == 4

    # a clean run afterwards removes the stale error list
    good = tmp_path / "good"
    shutil.copytree(folder, good, ignore=shutil.ignore_patterns("b_*", "c_*"))
    assert main(args(tiny_model_dir, out, "--root", good)) == 0
    assert not (tmp_path / "res" / "outputs.errors.json").exists()


def test_bad_images_of_a_test_json_are_skipped_listed_and_scored_as_missing(tiny_model_dir, folder, tmp_path, capsys):
    names = sorted(p.name for p in folder.iterdir())
    records = [{"image": n, "objects": [{"class": "ship", "bbox_aabb": [0.1, 0.1, 0.4, 0.4]}]} for n in names]
    (folder / "test.json").write_text(json.dumps(records))
    out = tmp_path / "outputs.json"
    assert main(args(tiny_model_dir, out, "--test-json", folder / "test.json")) == 0
    assert len(json.loads(out.read_text())) == 4
    errors = json.loads((tmp_path / "outputs.errors.json").read_text())
    assert len(errors) == 2 and "test.json: record 0, field 'image'" in errors[0]["error"] and "b_cut.jpg" in errors[0]["error"]

    from trl_ground.inference.evaluate import evaluate

    m = evaluate(out, folder / "test.json")
    assert m["counts"]["missing_predictions"] == 2 and m["counts"]["queries"] == 6
    assert m["tokens_per_answer"] is not None and m["tokens_per_answer"] >= 1


def test_a_crash_midway_keeps_the_answers_so_far(tiny_model_dir, folder, tmp_path, monkeypatch, capsys):
    import trl_ground.inference.predict as predict_module

    real = predict_module.generate_with_logprobs
    calls = []

    def failing(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(*a, **kw)

    monkeypatch.setattr(predict_module, "generate_with_logprobs", failing)
    out = tmp_path / "outputs.json"
    with pytest.raises(RuntimeError, match="illegal memory access"):
        main(args(tiny_model_dir, out, "--root", folder))
    assert len(json.loads(out.read_text())) == 2  # the first batch
    assert "prediction stopped after 2 of 6 queries" in capsys.readouterr().err
    assert not (tmp_path / "outputs.json.partial").exists()


def test_final_merged_gets_the_usual_permissions(tmp_path):
    from trl_ground.train.export import atomic_directory

    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "run" / "final_merged") as tmp:
            (tmp / "w.bin").write_bytes(b"1")
        assert stat.S_IMODE((tmp_path / "run" / "final_merged").stat().st_mode) == 0o755
        os.umask(0o002)
        with atomic_directory(tmp_path / "run" / "final_merged") as tmp:
            pass
        assert stat.S_IMODE((tmp_path / "run" / "final_merged").stat().st_mode) == 0o775
    finally:
        os.umask(old)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["final_merged"]  # nothing left beside it


def test_the_training_runs_prompt_words_reach_the_model(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    """A run trained with its own system prompt and query template is asked the same way."""
    import trl_ground.inference.predict as predict_module

    seen = []
    real = predict_module.prompt_batch

    def spy(processor, items, images, system_prompt, device):
        seen.append((system_prompt, [item.query for item in items]))
        return real(processor, items, images, system_prompt, device)

    monkeypatch.setattr(predict_module, "prompt_batch", spy)
    train, _, root = synthetic_data
    out = tmp_path / "o.json"
    assert main(["--model", str(tiny_model_dir), "--test-json", str(train), "--img-root", str(root), "--out", str(out),
                 "--max-new-tokens", "4", "--system-prompt", "Be brief.", "--query-template", "Boxes of {class}?"]) == 0
    system_prompt, queries = seen[0]
    assert system_prompt == "Be brief." and queries[0].startswith("Boxes of ") and queries[0].endswith("?")
    assert json.loads(out.read_text())[0]["query"] == queries[0]


def test_4bit_prediction_without_a_gpu_is_one_line(capsys, tiny_model_dir, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    line = one_line_error(capsys, main, ["--model", str(tiny_model_dir), "--root", str(tmp_path), "--class", "ship",
                                         "--load-in-4bit", "--out", str(tmp_path / "o.json")],
                          "--load-in-4bit needs a CUDA GPU", "16 bits")
    assert "Traceback" not in line
