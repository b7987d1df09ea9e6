"""The convert-data command (COCO / YOLO / DOTA / HF -> the project's JSON) and
predict_bbox.py's COCO results."""

import json
import subprocess
import sys
import tomllib

import pytest

from tests.helpers import REPO, make_truth, write_coco, write_dota, write_hf, write_yolo
from trl_ground.data.records import load_records


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """``(base, truth, {format: argv of its source})``."""
    base = tmp_path_factory.mktemp("convert")
    truth = make_truth(base, n=5)
    images = str(base / "images")
    labels, classes = write_yolo(base, truth)
    argv = {
        "coco": ["--from", "coco", "--annotations", str(write_coco(base, truth)), "--img-root", images],
        "yolo": ["--from", "yolo", "--images", images, "--labels", str(labels), "--classes", str(classes)],
        "dota": ["--from", "dota", "--images", images, "--labels", str(write_dota(base, truth))],
        "hf": ["--from", "hf", "--dataset", str(write_hf(base, truth, base / "images")), "--split", "train", "--img-root", str(base / "hf_images")],
    }
    return base, truth, argv


def convert_main(argv, capsys):
    from trl_ground.cli.convert_data import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["coco", "yolo", "dota", "hf"])
def test_each_format_converts_and_checks(sources, fmt, tmp_path, capsys):
    base, truth, argv = sources
    out = tmp_path / "train.json"
    code, stdout, stderr = convert_main([*argv[fmt], "--out", out, "--check", "--summary", tmp_path / "summary.json"], capsys)
    assert code == 0, stderr
    root = base / "hf_images" if fmt == "hf" else base / "images"
    records, _ = load_records(out, root)  # what training will read
    assert len(records) == len(truth) and sum(len(r.objects) for r in records) == sum(len(t["objects"]) for t in truth)
    assert f"train with: --train-json {out} --img-root {root}" in stdout
    assert f"records: {len(truth)} valid" in stdout  # the checker's summary
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["format"] == fmt and summary["images"] == len(truth) and summary["boxes"] == sum(len(t["objects"]) for t in truth)


def test_malformed_input_is_one_line_and_exit_1(sources, tmp_path, capsys):
    base, truth, argv = sources
    labels, classes = write_yolo(tmp_path, truth)
    bad = labels / truth[0]["image"].replace(".png", ".txt")
    bad.write_text("0 0.5 0.5 0.1\n")
    code, stdout, stderr = convert_main(["--from", "yolo", "--images", base / "images", "--labels", labels, "--classes", classes,
                                         "--out", tmp_path / "o.json"], capsys)
    assert code == 1 and stderr.count("\n") == 1
    assert stderr.startswith(f"error: {bad}, line 1: expected 5 values") and not (tmp_path / "o.json").exists()

    code, stdout, stderr = convert_main(["--from", "yolo", "--images", base / "images", "--labels", labels, "--classes", classes,
                                         "--out", tmp_path / "o.json", "--on-bad-record", "skip"], capsys)
    assert code == 0 and len(json.loads((tmp_path / "o.json").read_text())) == len(truth) - 1
    assert "malformed annotation (image skipped)" in stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--from", "yolo", "--images", "x", "--labels", "y", "--out", "o.json"], "error: --from yolo needs --classes"),
        (["--from", "yolo", "--images", "x", "--labels", "y", "--classes", "c", "--keep-crowd", "--out", "o.json"],
         "error: --keep-crowd does not apply to --from yolo"),
        (["--from", "voc", "--out", "o.json"], "error: argument --from: invalid choice: 'voc'"),
        (["--from", "coco", "--annotations", "missing.json", "--img-root", ".", "--out", "o.json"], "error: missing.json: COCO file not found"),
        (["--from", "hf", "--dataset", "nope", "--img-root", ".", "--out", "o.json"], "error: nope: not a saved dataset directory"),
    ],
)
def test_usage_and_missing_files(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = convert_main(argv, capsys)
    assert stderr.startswith(message) and stderr.count("\n") == 1 and code in (1, 2)


def test_script_shim_and_entry_point(sources, tmp_path):
    base, truth, argv = sources
    r = subprocess.run([sys.executable, "scripts/convert_data.py", *argv["dota"], "--out", str(tmp_path / "d.json")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert len(json.loads((tmp_path / "d.json").read_text())) == len(truth)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["trl-ground-convert-data"] == "trl_ground.cli.convert_data:main"


def test_predict_writes_coco_results(tiny_model_dir, sources, tmp_path, capsys):
    from scripts.predict_bbox import main

    base, truth, argv = sources
    code = main(["--model", str(tiny_model_dir), "--test-json", str(_converted(sources, tmp_path)), "--img-root", str(base / "images"),
                 "--prompt-mode", "per_class", "--out", str(tmp_path / "outputs.json"), "--max-new-tokens", "8",
                 "--coco-results", str(tmp_path / "coco.json")])
    assert code == 0
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    results = json.loads((tmp_path / "coco.json").read_text())
    gt = json.loads((tmp_path / "coco.gt.json").read_text())
    assert len(results) == sum(len(o["boxes"]) for o in outputs)
    assert sorted(i["file_name"] for i in gt["images"]) == sorted(t["image"] for t in truth)
    assert len(gt["annotations"]) == sum(len(t["objects"]) for t in truth)

    # with the user's own COCO file: its ids; a file that is not COCO fails before the model loads
    user_coco = argv["coco"][argv["coco"].index("--annotations") + 1]
    code = main(["--model", str(tiny_model_dir), "--test-json", str(_converted(sources, tmp_path)), "--img-root", str(base / "images"),
                 "--out", str(tmp_path / "o2.json"), "--max-new-tokens", "4", "--coco-results", str(tmp_path / "c2.json"),
                 "--coco-annotations", user_coco])
    assert code == 0 and not (tmp_path / "c2.gt.json").exists()
    (tmp_path / "not_coco.json").write_text("[]")
    capsys.readouterr()
    code = main(["--model", str(tiny_model_dir), "--test-json", str(_converted(sources, tmp_path)), "--out", str(tmp_path / "o3.json"),
                 "--coco-results", str(tmp_path / "c3.json"), "--coco-annotations", str(tmp_path / "not_coco.json")])
    err = capsys.readouterr().err
    assert code == 2 and "not_coco.json" in err and "Loading weights" not in err


def _converted(sources, tmp_path):
    """The COCO source as the project's JSON (image paths relative to the images folder)."""
    from trl_ground.data.formats import convert

    base, _, argv = sources
    path = tmp_path / "test.json"
    if not path.exists():
        coco = argv["coco"][argv["coco"].index("--annotations") + 1]
        path.write_text(json.dumps(convert("coco", annotations=coco, img_root=base / "images")[0]))
    return path
