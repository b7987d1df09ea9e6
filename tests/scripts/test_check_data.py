"""check_data.py opens every image, names the bad ones, and refuses a file that cannot train."""

import json

from PIL import Image

from trl_ground.cli.check_data import main


def dataset(root, names, objects=True):
    obj = [{"class": "ship", "bbox_aabb": [0.1, 0.1, 0.5, 0.5]}] if objects else []
    path = root / "train.json"
    path.write_text(json.dumps([{"image": n, "objects": obj} for n in names]))
    return ["--train-json", str(path), "--img-root", str(root)]


def test_truncated_and_garbage_images_fail_the_check_by_name(tmp_path, capsys):
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"\x00not an image" * 50)
    args = dataset(tmp_path, ["good.jpg", "cut.jpg", "junk.jpg"])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.json: record 1, field 'image'" in err[0] and "cut.jpg" in err[0] and "truncated" in err[0]

    assert main([*args, "--on-bad-record", "skip"]) == 0
    out, err = capsys.readouterr()
    assert "records: 1 valid, 2 skipped" in out and "all opened and decoded" in out
    assert "record 2, field 'image'" in out and err.startswith("warning: skipped 2 bad record(s)")

    assert main([*args, "--no-image-check"]) == 0  # trusted sets: existence only
    assert "records: 3 valid" in capsys.readouterr().out


def test_a_file_without_objects_is_reported(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(dataset(tmp_path, ["a.png", "a.png"], objects=False)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no training example: all 2 records have 'objects': []" in err[0]
