"""Each source format's reader called directly (trl_ground/data/formats/*.py), and the shared box
and summary helpers of formats/base.py; test_formats.py goes through ``convert``."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import H, W, dota_class, make_truth, write_coco, write_dota, write_hf, write_yolo
from trl_ground.data.formats.base import BadAnnotation, ConversionSummary, convert_each, finite_numbers, pixel_box, unit_box
from trl_ground.data.formats.coco import from_coco
from trl_ground.data.formats.dota import from_dota
from trl_ground.data.formats.hf import from_hf
from trl_ground.data.formats.project_json import from_json
from trl_ground.data.formats.yolo import from_yolo


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    base = tmp_path_factory.mktemp("readers")
    return base, make_truth(base, n=4)


def boxes_of(records):
    return [np.array([o["bbox_aabb"] for o in r["objects"]]).reshape(-1, 4) for r in records]


def truth_boxes(truth):
    return [np.array([b for _, b in t["objects"]]).reshape(-1, 4) for t in truth]


def assert_boxes(records, truth):
    assert [r["image"] for r in records] == [t["image"] for t in truth]
    for got, want in zip(boxes_of(records), truth_boxes(truth)):
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)


def test_unit_and_pixel_boxes_are_clipped_or_skipped_with_a_reason():
    summary = ConversionSummary("test", "src", "root")
    assert pixel_box(16, 32, 80, 64, W, H, summary, "a") == pytest.approx([0.1, 0.25, 0.5, 0.5])
    assert unit_box(-0.5, 0.2, 0.5, 1.5, summary, "b") == [0.0, 0.2, 0.5, 1.0] and summary.clipped == 1
    assert unit_box(0.5, 0.2, 0.5, 0.4, summary, "c") is None  # zero width
    assert unit_box(1.2, 0.2, 1.5, 0.4, summary, "d") is None  # wholly outside
    assert unit_box(0.3, 0.3, 0.3 + 1e-8, 0.4, summary, "e") is None  # narrower than the rounding
    assert summary.skipped == {"zero width or height": 2, "box outside the image": 1}
    assert summary.examples["box outside the image"] == ["d"]
    assert summary.to_dict()["skipped"] == {"zero width or height": 2, "box outside the image": 1}


def test_numbers_must_be_finite_and_not_bools():
    assert finite_numbers(["1", 2, 3.5], "x", "bbox") == [1.0, 2.0, 3.5]
    for bad, message in (([1, True], "must be numbers"), ([1, "a"], "must be numbers"), ([1, float("nan")], "must be finite")):
        with pytest.raises(BadAnnotation, match=f"^x: bbox {message}"):
            finite_numbers(bad, "x", "bbox")


def test_a_bad_item_raises_or_is_skipped_and_counted():
    def build(item):
        if item == "bad":
            raise BadAnnotation("item bad: broken")
        return {"image": item, "objects": [{"class": "ship"}]}

    with pytest.raises(BadAnnotation, match="item bad"):
        convert_each(["a", "bad"], build, ConversionSummary("t", "s", "r"), "error")
    summary = ConversionSummary("t", "s", "r")
    assert [r["image"] for r in convert_each(["a", "bad", "b"], build, summary, "skip")] == ["a", "b"]
    assert summary.images == 2 and summary.boxes_per_class == {"ship": 2}
    assert summary.skipped == {"malformed annotation (image skipped)": 1}
    with pytest.raises(ValueError, match="must be 'error' or 'skip'"):
        convert_each([], build, summary, "ignore")


def test_coco_reader(source):
    base, truth = source
    records, summary = from_coco(write_coco(base, truth, crowd=False), base / "images")
    assert_boxes(records, truth)
    assert summary.fmt == "coco" and summary.images == len(truth) and not summary.skipped


def test_yolo_reader(source, tmp_path):
    base, truth = source
    labels, classes = write_yolo(tmp_path, truth)
    records, summary = from_yolo(base / "images", labels, classes)
    ordered = sorted(truth, key=lambda t: t["image"])
    assert_boxes(records, ordered)
    # the class ids named through classes.txt
    assert [[o["class"] for o in r["objects"]] for r in records] == [[c for c, _ in t["objects"]] for t in ordered]
    assert summary.images == len(truth)


def test_dota_reader_drops_difficult_objects_on_request(source, tmp_path):
    base, truth = source
    labels = write_dota(tmp_path, truth)
    ordered = sorted(truth, key=lambda t: t["image"])
    records, _ = from_dota(base / "images", labels)
    assert_boxes(records, ordered)
    assert [o["class"] for o in records[0]["objects"]] == [dota_class(c) for c, _ in ordered[0]["objects"]]
    kept, summary = from_dota(base / "images", labels, drop_difficult=True)
    assert sum(len(r["objects"]) for r in kept) == sum(len(t["objects"][::2]) for t in ordered)  # difficult: every other one
    assert sum(summary.skipped.values()) == sum(len(t["objects"][1::2]) for t in ordered)


def test_hf_reader_writes_the_images(source, tmp_path):
    base, truth = source
    dataset = write_hf(tmp_path, truth, base / "images")
    records, summary = from_hf(str(dataset), tmp_path / "out")
    assert len(records) == len(truth) and summary.images == len(truth)
    for rec, want in zip(records, truth_boxes(truth)):
        assert (tmp_path / "out" / rec["image_path"]).is_file()
        np.testing.assert_allclose(boxes_of([rec])[0], want, atol=1e-3, rtol=0)


def test_project_json_reader_keeps_valid_records_and_counts_the_others(tmp_path):
    good = {"image": "a.png", "objects": [{"class": "ship", "bbox_aabb": [0.1, 0.1, 0.2, 0.2]}]}
    bad = {"image": "b.png", "objects": [{"class": "ship", "bbox_aabb": [0.5, 0.1, 0.2, 0.2]}]}  # x2 < x1
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    path = tmp_path / "train.json"
    path.write_text(json.dumps([good, bad]))
    with pytest.raises(ValueError, match="record 1"):
        from_json(path, tmp_path)
    records, summary = from_json(path, tmp_path, on_bad_record="skip")
    assert records == [good] and summary.images == 1 and summary.boxes_per_class == {"ship": 1}
    assert summary.skipped == {"failed the records' validation": 1}
