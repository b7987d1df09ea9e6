"""Sliced prediction: tiles asked, boxes mapped back onto the image and merged across tile
borders (with an oracle in place of the model: each tile answers the boxes it holds)."""

import numpy as np
import pytest

from tests.helpers import crowded_image
from trl_ground.data.tiling import boxes_to_tile
from trl_ground.inference import sliced_predict
from trl_ground.inference.predict import PredictionItem
from trl_ground.inference.sliced_predict import SliceSettings, iter_sliced_predictions

# x in pixels of a 1000 x 600 image cut into 512 px tiles with 128 px overlap: tiles start at x 0, 384, 488
TRUTH_PX = np.array([
    [480, 100, 600, 160],   # across the border of the first tile: three tiles each see a piece
    [400, 300, 450, 340],   # inside the overlap band: seen whole by two tiles
    [40, 40, 80, 80],       # one tile only
    [900, 500, 960, 560],
])


def oracle(truth):
    """``iter_predictions`` of a model that answers, for each tile, every box it shows >= 20 %."""

    def answers(model, processor, items, **options):
        for item in items:
            window = item.crop or (0, 0, 1000, 600)
            boxes, _ = boxes_to_tile(truth, (1000, 600), window, min_visible=0.2)
            yield {**item.meta, "image_path": item.image_path, "answer": "", "valid_json": True, "truncated": False,
                   "num_tokens": 5, "boxes": boxes.tolist(), "labels": ["ship"] * len(boxes), "scores": [0.9] * len(boxes)}

    return answers


@pytest.mark.parametrize("with_full", [False, True])
def test_tiles_answers_go_back_onto_the_image_and_duplicates_merge(tmp_path, monkeypatch, with_full):
    crowded_image(tmp_path, 1000, 600, n_boxes=1)
    truth = TRUTH_PX / [1000, 600, 1000, 600]
    monkeypatch.setattr(sliced_predict, "iter_predictions", oracle(truth))
    item = PredictionItem(str(tmp_path / "big.png"), "ship", "Locate every ship", {"image": "big.png", "record": 0})
    [answer] = iter_sliced_predictions(None, None, [item], SliceSettings(512, 128, with_full=with_full))
    assert len(answer["tiles"]) == 6 + with_full and answer["tiles"][0]["window"] == (None if with_full else [0, 0, 512, 512])
    got = np.array(answer["boxes"])
    assert len(got) == len(truth)  # every piece and duplicate merged into one box per object
    order = np.lexsort((got[:, 1], got[:, 0]))
    np.testing.assert_allclose(got[order], truth[np.lexsort((truth[:, 1], truth[:, 0]))], atol=1e-3)
    assert answer["scores"] == [0.9] * 4 and answer["labels"] == ["ship"] * 4
    assert (answer["width"], answer["height"], answer["image"], answer["record"]) == (1000, 600, "big.png", 0)
    np.testing.assert_allclose(np.array(answer["boxes_px"])[order], TRUTH_PX[np.lexsort((TRUTH_PX[:, 1], TRUTH_PX[:, 0]))], atol=1)


def test_nms_keeps_the_best_piece_and_an_unreadable_image_is_one_error(tmp_path, monkeypatch):
    crowded_image(tmp_path, 1000, 600, n_boxes=1)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    monkeypatch.setattr(sliced_predict, "iter_predictions", oracle(TRUTH_PX / [1000, 600, 1000, 600]))
    items = [PredictionItem(str(tmp_path / n), "ship", "q", {"image": n}) for n in ("junk.png", "big.png")]
    error, answer = iter_sliced_predictions(None, None, items, SliceSettings(512, 128, merge="nms", metric="iou"))
    assert "error" in error and error["image"] == "junk.png"
    assert len(answer["boxes"]) > 4  # IoU-matched NMS leaves the pieces of the cut object that overlap little


@pytest.mark.parametrize("options, words", [
    ({"size": 300, "overlap": 300}, "must be smaller than the tile size"),
    ({"size": 300, "merge": "wbf"}, "merge method must be one of"),
])
def test_bad_slice_settings(options, words):
    with pytest.raises(ValueError, match=words):
        SliceSettings(**options)
