"""Crowded and huge images: check-data names the examples max_length would cut; convert-data
--tile writes tiles whose boxes map back; predict --tile merges the tiles' answers."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import crowded_image
from trl_ground.cli.check_data import main as check_main
from trl_ground.cli.convert_data import main as convert_main
from trl_ground.data.tiling import boxes_from_tile


def test_check_data_names_the_record_whose_answer_max_length_would_cut(tmp_path, capsys):
    train, _ = crowded_image(tmp_path, 1200, 1200, n_boxes=600, box_px=12)
    args = ["--train-json", str(train), "--img-root", str(tmp_path)]
    assert check_main(args) == 0
    out, err = capsys.readouterr()
    assert "longer than max_length 2,048: 1 examples" in out
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(train) in warning[0] and "record 0 (big.png, 'ship', 600 boxes)" in warning[0]
    assert "longer than max_length 2,048" in warning[0] and "--tile-size" in warning[0]
    # tiled as training would tile it, every example fits
    assert check_main([*args, "--tile-size", "240", "--tile-overlap", "40"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "cut into" in out and "longer than" not in out


def test_convert_data_tiles_a_large_image_and_its_boxes_map_back(tmp_path, capsys):
    train, boxes = crowded_image(tmp_path, 1200, 800, n_boxes=40, box_px=24)
    out = tmp_path / "tiles.json"
    argv = ["--from", "json", "--annotations", str(train), "--img-root", str(tmp_path), "--out", str(out),
            "--tile", "512", "--overlap", "128", "--min-visible", "1.0"]
    assert convert_main(argv) == 0
    printed = capsys.readouterr().out
    tile_dir = tmp_path / "tiles_tiles"
    assert f"--img-root {tile_dir}" in printed and "tiles: 6 of 512 px" in printed
    tiles = json.loads(out.read_text())
    source = Image.open(tmp_path / "big.png").convert("RGB")
    found = np.zeros(len(boxes), dtype=bool)
    for rec in tiles:
        window = rec["tile"]
        tile_image = Image.open(tile_dir / rec["image_path"]).convert("RGB")
        assert tile_image.size == (window[2] - window[0], window[3] - window[1]) and rec["source_image"] == "big.png"
        for obj in rec["objects"]:
            back = boxes_from_tile([obj["bbox_aabb"]], source.size, window)[0]
            np.testing.assert_allclose(back, boxes[obj["obj_id"]], atol=1e-3)
            found[obj["obj_id"]] = True
            # the tile shows what the image shows at the box's centre
            cx, cy = (np.array(obj["bbox_aabb"][:2]) + obj["bbox_aabb"][2:]) / 2 * tile_image.size
            assert tile_image.getpixel((int(cx), int(cy))) == source.getpixel((int(cx) + window[0], int(cy) + window[1]))
    assert found.all()
    assert check_main(["--train-json", str(out), "--img-root", str(tile_dir)]) == 0  # valid training data


@pytest.mark.parametrize("extra, words", [
    (["--tile", "256", "--overlap", "256"], "overlap (256 px) must be smaller than the tile size (256 px)"),
    (["--overlap", "64"], "need --tile SIZE"),
    (["--tile", "256", "--min-visible", "0"], "must lie in (0, 1]"),
])
def test_bad_tiling_options_are_one_line(tmp_path, capsys, extra, words):
    train, _ = crowded_image(tmp_path, 300, 200, n_boxes=4)
    argv = ["--from", "json", "--annotations", str(train), "--img-root", str(tmp_path), "--out", str(tmp_path / "o.json")]
    assert convert_main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_predict_tile_by_tile_on_the_tiny_model_and_evaluate_on_the_original_image(tiny_model_dir, tmp_path, capsys):
    from trl_ground.cli.eval_bbox import main as eval_main
    from trl_ground.cli.predict_bbox import main as predict_main

    train, _ = crowded_image(tmp_path, 700, 500, n_boxes=12)
    out = tmp_path / "outputs.json"
    argv = ["--model", str(tiny_model_dir), "--test-json", str(train), "--img-root", str(tmp_path), "--out", str(out),
            "--max-new-tokens", "16", "--batch-size", "4", "--tile", "400", "--overlap", "100", "--tile-with-full"]
    assert predict_main(argv) == 0
    [answer] = json.loads(out.read_text())
    assert (answer["width"], answer["height"]) == (700, 500) and len(answer["scores"]) == len(answer["boxes"])
    assert [t["window"] for t in answer["tiles"]] == [None, [0, 0, 400, 400], [300, 0, 700, 400], [0, 100, 400, 500], [300, 100, 700, 500]]
    assert eval_main(["--pred", str(out), "--gt", str(train), "--out", str(tmp_path / "metrics.json")]) == 0
    assert predict_main([*argv[:-5], "--overlap", "100"]) == 2  # tile options need --tile
    assert "need --tile SIZE" in capsys.readouterr().err
