"""A predictions file read and checked before it is scored (trl_ground/inference/predictions.py)."""

import json
import re

import numpy as np
import pytest

from trl_ground.inference.predictions import read_predictions


def write(tmp_path, data):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(data))
    return path


def test_predict_outputs_with_defaults_and_out_of_range_boxes(tmp_path):
    path = write(tmp_path, [
        {"image": "a.png", "class": "ship", "boxes": [[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 1.2, 0.9]], "scores": [0.9, 0.4],
         "mode": "class", "num_tokens": 31, "truncated": True},
        {"image": "b.png", "class": "car", "boxes": []},
    ])
    read = read_predictions(path)
    assert not read.training_format and read.images == {"a.png", "b.png"}
    a, b = read.entries
    assert (a.index, a.cls, a.mode, a.num_tokens, a.truncated, a.valid_json) == (0, "ship", "class", 31, True, True)
    np.testing.assert_allclose(a.scores, [0.9, 0.4])
    assert a.out_of_range and not b.out_of_range  # 1.2: flagged, not an error
    assert b.boxes.shape == (0, 4) and b.mode is None and b.num_tokens is None


def test_training_format_is_a_table_of_every_class_of_each_image(tmp_path):
    path = write(tmp_path, [{"image": "a.png", "objects": [
        {"class": "ship", "bbox_aabb": [0.1, 0.1, 0.2, 0.2]}, {"class": "car", "bbox_aabb": [0.3, 0.3, 0.4, 0.4]},
        {"class": "ship ", "bbox_aabb": [0.5, 0.5, 0.6, 0.6]}]}, {"image": "empty.png", "objects": []}])
    read = read_predictions(path)
    assert read.training_format and read.images == {"a.png", "empty.png"}
    by_class = {e.cls: e for e in read.entries}
    assert set(by_class) == {"ship", "car"} and len(by_class["ship"].boxes) == 2
    assert (by_class["ship"].scores == 1).all()


@pytest.mark.parametrize("data, message", [
    ({"image": "a.png"}, "expected a JSON list of predictions, got a dict"),
    ([{"class": "ship", "boxes": []}], "image"),
    ([{"image": "a.png", "class": "ship", "boxes": [[0.1, 0.2, 0.3]]}], "boxes"),
    ([{"image": "a.png", "class": "ship", "boxes": [[0.1, 0.1, 0.2, 0.2]], "scores": [0.5, 0.5]}], "scores"),
    ([{"image": "a.png", "class": "ship", "boxes": [], "mode": "guess"}], "mode"),
])
def test_a_malformed_entry_is_named(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}.*{message}") as err:
        read_predictions(path)
    if isinstance(data, list):
        assert "0" in str(err.value)  # the entry's index
