"""Training tiles crowded images on the fly (--tile-size) and names at start the examples
that max_length would cut."""

import logging

import numpy as np

from trl_ground.config import parse_args
from trl_ground.train import build_trainer

from tests.helpers import REPO, crowded_image


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
    from trl_ground.tiling import boxes_from_tile

    return boxes_from_tile(tile_boxes, (1000, 600), crop)
