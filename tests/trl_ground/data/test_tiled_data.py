"""Training tiles crowded images on the fly (--tile-size) and names at start the examples
that max_length would cut."""

import json
import logging

import numpy as np

from tests.helpers import REPO, crowded_image
from trl_ground.config import parse_args
from trl_ground.train.job import build_trainer


def argv(tiny_model_dir, train, root, out, *extra):
    return ["--config", str(REPO / "configs/demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
            "--train-json", str(train), "--eval-json", str(train), "--img-root", str(root), "--make-synthetic-data", "0",
            "--output-dir", str(out), *extra]


def test_training_tiles_on_the_fly_and_warns_about_examples_it_would_cut(tiny_model_dir, tmp_path, caplog):
    train, boxes = crowded_image(tmp_path, 1000, 600, n_boxes=60, box_px=20)
    with caplog.at_level(logging.WARNING, logger="trl_ground"):
        trainer = build_trainer(*parse_args(argv(tiny_model_dir, train, tmp_path, tmp_path / "whole", "--max-length", "1024")))
    warned = [r.getMessage() for r in caplog.records if "max_length" in r.getMessage()]
    assert len(warned) == 1 and str(train) in warned[0] and "record 0 (big.png, 'ship', 60 boxes)" in warned[0]
    assert "max_length 1,024" in warned[0]
    assert len(trainer.train_dataset) == 1

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trl_ground"):
        trainer = build_trainer(*parse_args(argv(tiny_model_dir, train, tmp_path, tmp_path / "tiled", "--max-length", "1024",
                                                 "--tile-size", "256", "--tile-overlap", "32")))
    assert not [r for r in caplog.records if "max_length" in r.getMessage()]
    rows = trainer.train_dataset.with_format(None).to_list()
    assert len(rows) == 15 and all(len(r["crop"]) == 4 for r in rows)  # 5 x 3 tiles of 256 px
    example = trainer.train_dataset[0]
    assert "crop" not in example and example["image"].width == example["image"].height  # the loader cut the square tile out
    recovered = np.concatenate([_to_image(r["gt_boxes"], r["crop"]) for r in rows])
    gap = np.abs(boxes[:, None, :] - recovered[None, :, :]).max(axis=2).min(axis=1)
    assert (gap < 1e-3).all()  # the overlap (32 px) is wider than a box (20 px): each lies whole in some tile
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == len(batch["gt_boxes"]) == trainer.args.per_device_train_batch_size


def _to_image(tile_boxes, crop):
    from trl_ground.data.tiling import boxes_from_tile

    return boxes_from_tile(tile_boxes, (1000, 600), crop)


def test_tile_records_and_write_tiles_keep_every_box_once_whole(tmp_path):
    """The two ways to tile (in memory for training, as files for convert-data) on one image:
    3 x 2 tiles of 128 px over 320 x 200, the empty ones left out, every box found again."""
    from PIL import Image

    from trl_ground.data.records import load_records
    from trl_ground.data.tiled_data import tile_records, write_tiles

    train, boxes = crowded_image(tmp_path, 320, 200, n_boxes=4, box_px=16)
    records, _ = load_records(train, tmp_path)
    tiles, report = tile_records(records, 128, 32, source="train.json")
    assert report.images == 1 and report.tiles + report.empty_tiles == 6 and report.tiles == len(tiles) and report.tiles < 6
    assert report.boxes_lost == 0 and report.lost_line() is None
    recovered = np.concatenate([boxes_from(np.array([o.box for o in t.objects]), t.crop) for t in tiles])
    gap = np.abs(boxes[:, None, :] - recovered[None, :, :]).max(axis=2).min(axis=1)
    assert (gap < 1e-3).all() and {o.obj_id for t in tiles for o in t.objects} == set(range(4))

    written, report2 = write_tiles(json.loads(train.read_text()), tmp_path, tmp_path / "tiles", 128, 32)
    assert [w["tile"] for w in written] == [list(t.crop) for t in tiles] and report2.tiles == report.tiles
    for w, t in zip(written, tiles):
        assert w["source_image"] == "big.png" and w["image_path"] == f"big__{t.crop[0]}_{t.crop[1]}.png"
        with Image.open(tmp_path / "tiles" / w["image_path"]) as img:
            assert img.size == (128, 128)
        np.testing.assert_allclose([o["bbox_aabb"] for o in w["objects"]], [o.box for o in t.objects], atol=1e-6)

    # a box (16 px) larger than a tile (12 px) is in none: counted and named
    _, report = tile_records(records, 12, 0, min_visible=0.9, source="train.json")
    assert report.boxes_lost == 4 and report.lost_line().startswith("4 boxes are in no tile") and "train.json: record 0 (4)" in report.lost_line()


def boxes_from(tile_boxes, crop):
    from trl_ground.data.tiling import boxes_from_tile

    return boxes_from_tile(tile_boxes, (320, 200), crop)
