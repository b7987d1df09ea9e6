import json

import numpy as np
import pytest
from PIL import Image

from rewards import parse_boxes
from trl_ground.config import DataArguments
from trl_ground.data.dataset import ImageLoader, build_dataset, build_examples, smart_resize
from trl_ground.data.records import load_records
from trl_ground.data.synthetic import make_synthetic_dataset


@pytest.fixture()
def scene(tmp_path):
    Image.new("RGB", (640, 480), (10, 20, 30)).save(tmp_path / "a.png")
    objects = [
        {"class": "ship", "bbox_aabb": [0.5, 0.5, 0.6, 0.6], "is_unique": True, "obj_size": "small", "obj_position": "center"},
        {"class": "ship", "bbox_aabb": [0.1, 0.1, 0.2, 0.2], "is_unique": False},
        {"class": "car", "bbox_aabb": [0.7, 0.7, 0.9, 0.8], "is_unique": True, "obj_size": "large", "obj_position": "bottom right"},
    ]
    (tmp_path / "train.json").write_text(json.dumps([{"image": "a.png", "objects": objects}]))
    (tmp_path / "other.json").write_text(json.dumps([{"image": "a.png", "objects": [{"class": "plane", "bbox_aabb": [0, 0, 1, 1]}]}]))
    return tmp_path


def rows_for(scene, **kw):
    recs, _ = load_records(scene / "train.json", scene)
    return build_examples(recs, DataArguments(**kw), all_classes=["car", "plane", "ship"])


def test_primary_mode_queries_most_common_class_with_all_its_boxes(scene):
    (row,) = rows_for(scene)
    assert row["class"] == "ship" and row["mode"] == "primary"
    assert "Locate every ship" in row["prompt"][1]["content"] and row["prompt"][0]["role"] == "system"
    answer = row["completion"][0]["content"]
    assert answer == '[{"bbox_2d": [100, 100, 200, 200], "label": "ship"}, {"bbox_2d": [500, 500, 600, 600], "label": "ship"}]'
    np.testing.assert_allclose(parse_boxes(answer).boxes, row["gt_boxes"])  # coordinate round trip


def test_per_class_and_negative_modes(scene):
    rows = rows_for(scene, prompt_mode="per_class", add_negatives=True)
    assert [(r["class"], r["mode"]) for r in rows] == [("ship", "class"), ("car", "class"), ("plane", "negative")]
    assert rows[-1]["completion"][0]["content"] == "[]" and rows[-1]["gt_boxes"] == []


def test_negative_fraction_keeps_a_share_of_the_negatives(tmp_path):
    make_synthetic_dataset(tmp_path, n=200, seed=3, test_fraction=0.0, size=32, max_objects=2)
    recs, _ = load_records(tmp_path / "train.json", tmp_path)

    def negatives(fraction):
        rows = build_examples(recs, DataArguments(add_negatives=True, negative_fraction=fraction))
        return [(r["image_id"], r["class"]) for r in rows if r["mode"] == "negative"]

    everyone, quarter = negatives(1.0), negatives(0.25)
    assert len(everyone) == 200 and negatives(0.0) == []
    assert 30 <= len(quarter) <= 70 and len({image for image, _ in quarter}) == len(quarter)
    assert quarter == negatives(0.25)  # deterministic
    with pytest.raises(ValueError, match="negative_fraction"):
        DataArguments(negative_fraction=1.5)


def test_referring_mode_phrases_unique_objects(scene):
    rows = rows_for(scene, prompt_mode="referring")
    assert [r["prompt"][1]["content"].split(" in the image")[0] for r in rows] == [
        "Locate the small ship at the center",
        "Locate the large car at the bottom right",
    ]
    assert all(len(r["gt_boxes"]) == 1 and r["is_unique"] for r in rows)


def test_templates_are_configurable_and_checked(scene):
    (row,) = rows_for(scene, query_template="Find {class}.", system_prompt="S")
    assert row["prompt"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Find ship."}]
    with pytest.raises(ValueError):
        DataArguments(query_template="no placeholder")
    with pytest.raises(ValueError):
        DataArguments(prompt_mode="everything")


def test_dataset_loads_images_lazily_and_resizes(scene):
    args = DataArguments(max_pixels=128 * 128, min_pixels=32 * 32)
    ds, _ = build_dataset(scene / "train.json", scene, args)
    assert ds.column_names[:1] == ["image"] and isinstance(ds.data.column("image")[0].as_py(), str)  # stored as a path
    img = ds[0]["image"]
    assert isinstance(img, Image.Image)
    h, w = smart_resize(480, 640, 32, 32 * 32, 128 * 128)
    assert img.size == (w, h) and w * h <= 128 * 128 and w % 32 == 0 and h % 32 == 0
    assert ds[0]["gt_boxes"] == [[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.6, 0.6]] and ds[0]["class"] == "ship"


def test_image_loader_keeps_images_that_already_fit(tmp_path):
    Image.new("RGB", (64, 96)).save(tmp_path / "x.png")
    assert ImageLoader(32 * 32, 448 * 448).load(str(tmp_path / "x.png")).size == (64, 96)


def test_synthetic_generator_is_deterministic_and_valid(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n=12, seed=3)
    b = make_synthetic_dataset(tmp_path / "b", n=12, seed=3)
    assert a[0].read_text() == b[0].read_text()
    assert (tmp_path / "a/images/scene_3_00004.png").read_bytes() == (tmp_path / "b/images/scene_3_00004.png").read_bytes()
    recs, _ = load_records(a[0], a[2])
    tests, _ = load_records(a[1], a[2])
    assert len(recs) + len(tests) == 12
    objects = [o for r in recs for o in r.objects]
    assert {o.cls for o in objects} <= {"ship", "airplane", "vehicle", "storage tank"}
    assert all(o.size in ("small", "medium", "large") and o.position for o in objects)
    for r in recs:  # is_unique: no other object shares class, size and position
        keys = [(o.cls, o.size, o.position) for o in r.objects]
        assert all(o.is_unique == (keys.count(k) == 1) for o, k in zip(r.objects, keys))
