import json

import numpy as np
import pytest
from PIL import Image

from trl_ground.data.records import load_records


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / name)
    return tmp_path


def write(root, data, raw=None):
    path = root / "train.json"
    path.write_text(raw if raw is not None else json.dumps(data))
    return path


def good(**over):
    rec = {"image": "a.png", "image_path": "img/a.png", "objects": [{"class": "ship", "bbox_aabb": [0.1, 0.2, 0.3, 0.4]}]}
    rec.update(over)
    return rec


def test_valid_records_load(root):
    recs, skipped = load_records(write(root, [good(), {"image": "img/b.png", "objects": []}]), root)
    assert len(recs) == 2 and not skipped
    assert recs[0].objects[0].box == (0.1, 0.2, 0.3, 0.4) and recs[1].image_path.name == "b.png"


@pytest.mark.parametrize(
    "data, raw, message",
    [
        ({"image": "a.png"}, None, "expected a JSON list"),
        (None, '[{"image": "a.png", "objects": [', "truncated"),
        ([{"objects": []}], None, "record 0, field 'image': missing"),
        ([good(), good(image_path="img/nope.png")], None, "record 1, field 'image_path': image file not found"),
        ([good(objects={"class": "ship"})], None, "field 'objects': must be a list"),
        ([good(objects=[{"class": "ship", "bbox_aabb": [0.1, 0.2, 0.3]}])], None, "objects[0].bbox_aabb': expected 4 numbers"),
        ([good(objects=[{"class": "ship", "bbox_aabb": [0.1, "x", 0.3, 0.4]}])], None, "finite numbers"),
        ([good(objects=[{"class": "ship", "bbox_aabb": [0.1, 0.2, 1.5, 0.4]}])], None, "normalized to [0, 1]"),
        ([good(objects=[{"class": "ship", "bbox_aabb": [0.3, 0.2, 0.1, 0.4]}])], None, "x2 > x1"),
        ([good(image_path="../../etc/passwd")], None, "resolves outside the image root"),
        ([good(objects=[{"bbox_aabb": [0.1, 0.2, 0.3, 0.4]}])], None, "objects[0].class'"),
    ],
)
def test_rejections_name_file_record_and_field(root, data, raw, message):
    path = write(root, data, raw)
    with pytest.raises(ValueError) as err:
        load_records(path, root)
    assert str(path) in str(err.value) and message in str(err.value)


def test_small_overshoot_is_clipped(root):
    recs, _ = load_records(write(root, [good(objects=[{"class": "ship", "bbox_aabb": [-0.005, 0.2, 1.004, 0.4]}])]), root)
    assert recs[0].objects[0].box == (0.0, 0.2, 1.0, 0.4)


def test_skip_mode_counts_and_reports(root, caplog):
    data = [good(), {"objects": []}, good(image_path="img/missing.png")]
    recs, skipped = load_records(write(root, data), root, on_bad_record="skip")
    assert len(recs) == 1 and len(skipped) == 2
    assert "record 1" in skipped[0] and "record 2" in skipped[1]
    assert "skipped 2 bad record(s)" in caplog.text


def test_boxes_sorted_top_to_bottom_then_left_to_right(root):
    objs = [{"class": "ship", "bbox_aabb": b} for b in ([0.5, 0.5, 0.6, 0.6], [0.7, 0.1, 0.8, 0.2], [0.1, 0.1, 0.2, 0.2])]
    recs, _ = load_records(write(root, [good(objects=objs)]), root)
    np.testing.assert_allclose(recs[0].boxes_of("ship")[:, :2], [[0.1, 0.1], [0.7, 0.1], [0.5, 0.5]])
