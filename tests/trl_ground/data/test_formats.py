"""COCO / YOLO / DOTA / Hugging Face sources -> records, compared box by box with the
generator's ground truth; malformed inputs; COCO results scored by pycocotools; training
straight from a YOLO folder."""

import json

import numpy as np
import pytest

from tests.helpers import COCO_IDS, REPO, H, W, dota_class, make_truth, write_coco, write_dota, write_hf, write_yolo
from trl_ground.data.formats import FORMATS, convert, load_source_records
from trl_ground.data.formats.coco_results import coco_results, write_coco_results
from trl_ground.data.records import load_records


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    base = tmp_path_factory.mktemp("formats")
    return base, make_truth(base)


def assert_same(records, truth, rename=lambda c: c, images=None):
    """Every record matches the ground truth: same images, classes and boxes (1e-3)."""
    assert len(records) == len(truth)
    for rec, t in zip(records, truth):
        assert rec["image"] == (images(t) if images else t["image"])
        assert [o["class"] for o in rec["objects"]] == [rename(c) for c, _ in t["objects"]]
        got = np.array([o["bbox_aabb"] for o in rec["objects"]]).reshape(-1, 4)
        want = np.array([b for _, b in t["objects"]]).reshape(-1, 4)
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)


def test_registry_lists_the_formats():
    assert set(FORMATS) == {"coco", "yolo", "dota", "hf", "json"}
    with pytest.raises(ValueError, match="unknown source format 'voc'"):
        convert("voc")
    with pytest.raises(ValueError, match="needs classes"):
        convert("yolo", images=".", labels=".")


def test_coco_round_trip(source):
    base, truth = source
    coco = write_coco(base, truth)
    records, summary = convert("coco", annotations=coco, img_root=base / "images")
    assert_same(records, truth)  # the first image has no width/height in the file: read from the image
    assert summary.images == len(truth) and summary.images_without_objects == sum(not t["objects"] for t in truth)
    assert summary.skipped == {"crowd annotation (keep with --keep-crowd)": 1}
    assert records[0]["objects"][0]["obj_id"] == 1000  # the annotation id

    kept, summary = convert("coco", annotations=coco, img_root=base / "images", keep_crowd=True)
    crowd = [o for o in kept[1]["objects"] if o.get("iscrowd")]
    assert len(crowd) == 1 and crowd[0]["class"] == "ship" and not summary.skipped
    np.testing.assert_allclose(crowd[0]["bbox_aabb"], [1 / W, 2 / H, 31 / W, 22 / H], atol=1e-6)


def test_yolo_round_trip(source):
    base, truth = source
    labels, classes = write_yolo(base, truth)
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    records, summary = convert("yolo", images=base / "images", labels=labels, classes=classes)
    order = sorted(range(len(truth)), key=lambda i: truth[i]["image"])  # YOLO lists images by path
    assert_same(records, [truth[i] for i in order])
    assert summary.skipped == {"label file without an image": 1}


def test_yolo_class_names_from_a_data_yaml(source, tmp_path):
    base, truth = source
    labels, _ = write_yolo(tmp_path, truth)
    names = sorted(COCO_IDS)
    (tmp_path / "data.yaml").write_text("names:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    records, _ = convert("yolo", images=base / "images", labels=labels, classes=tmp_path / "data.yaml")
    assert_same(records, sorted(truth, key=lambda t: t["image"]))


def test_dota_round_trip_difficult_and_clipping(source, tmp_path):
    base, truth = source
    labels = write_dota(tmp_path, truth)
    records, summary = convert("dota", images=base / "images", labels=labels)
    ordered = sorted(truth, key=lambda t: t["image"])
    assert_same(records, ordered, rename=dota_class)
    assert all([o["difficult"] for o in r["objects"]] == [k % 2 for k in range(len(r["objects"]))] for r in records)

    kept, summary = convert("dota", images=base / "images", labels=labels, drop_difficult=True)
    n_difficult = sum(len(t["objects"]) // 2 for t in truth)
    assert summary.skipped["difficult (dropped by --drop-difficult)"] == n_difficult
    assert all(o["difficult"] == 0 for r in kept for o in r["objects"])

    # a quadrilateral reaching past the image's right and top edges is clipped to it
    name = ordered[0]["image"]
    (labels / name).with_suffix(".txt").write_text(f"150 -10 {W + 20} -10 {W + 20} 40 150 40 ship 0\n")
    records, summary = convert("dota", images=base / "images", labels=labels)
    assert records[0]["objects"][0]["bbox_aabb"] == pytest.approx([150 / W, 0.0, 1.0, 40 / H])
    assert summary.clipped == 1


def test_hf_round_trip_saved_dataset(source, tmp_path):
    base, truth = source
    path = write_hf(tmp_path, truth, base / "images")
    records, summary = convert("hf", dataset=path, img_root=tmp_path / "hf_images")
    assert_same(records, truth, images=lambda t: f"train_{[x['image'] for x in truth].index(t['image']):06d}.png")
    assert all((tmp_path / "hf_images" / r["image"]).is_file() for r in records)
    assert summary.source.endswith("[train]")


def test_hf_list_of_dicts_with_names_and_xyxy(source, tmp_path):
    from datasets import Dataset, Features, Image, List, Value

    base, truth = source
    t = next(t for t in truth if t["objects"])
    features = Features({"img": Image(), "objs": List({"box": List(Value("float64"), length=4), "label": Value("string")})})
    rows = {"img": [str(base / "images" / t["image"])], "objs": [[{"box": b, "label": c} for c, b in t["objects"]]]}
    Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "ds"))
    records, _ = convert("hf", dataset=tmp_path / "ds", img_root=tmp_path / "out", bbox_format="xyxy", bbox_normalized=True,
                         image_column="img", objects_column="objs", bbox_key="box", category_key="label")
    assert_same(records, [t], images=lambda _: "train_000000.png")


# --- malformed inputs: one line, naming the file and the line or annotation id ---------------

def coco_with(base, truth, tmp_path, **change):
    data = json.loads(write_coco(base, truth, crowd=False).read_text())
    data["annotations"][0].update(change)
    path = tmp_path / "bad_coco.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"category_id": 99}, "annotation id 1000: unknown category id 99"),
        ({"bbox": [10, 10, -5, 8]}, "annotation id 1000: negative width -5"),
        ({"bbox": [10, 10, 5]}, "annotation id 1000: bbox must be 4 numbers"),
        ({"image_id": 5}, "annotation id 1000: image_id 5 is not in 'images'"),
    ],
)
def test_coco_malformed(source, tmp_path, change, message):
    base, truth = source
    path = coco_with(base, truth, tmp_path, **change)
    with pytest.raises(ValueError) as err:
        convert("coco", annotations=path, img_root=base / "images")
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def yolo_labels(tmp_path, truth, line):
    labels, classes = write_yolo(tmp_path, truth)
    name = next(t["image"] for t in truth if t["objects"])
    label = labels / name.replace(".png", ".txt")
    label.write_text(label.read_text() + line + "\n")
    return labels, classes, label, len(label.read_text().splitlines())


@pytest.mark.parametrize(
    "line, message",
    [
        ("1 0.5 0.5 0.2", "expected 5 values 'class_id cx cy w h', got 4"),
        ("7 0.5 0.5 0.2 0.2", "unknown class id 7 (the classes file names ids 0..3)"),
        ("1 0.5 0.5 -0.2 0.2", "negative width -0.2"),
        ("1 64 40 20 10", "must be normalized to [0, 1]"),
        ("ship 0.5 0.5 0.2 0.2", "class id must be an integer"),
    ],
)
def test_yolo_malformed(source, tmp_path, line, message):
    base, truth = source
    labels, classes, label, n = yolo_labels(tmp_path, truth, line)
    with pytest.raises(ValueError) as err:
        convert("yolo", images=base / "images", labels=labels, classes=classes)
    assert str(err.value).startswith(f"{label}, line {n}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_malformed_images_are_skipped_on_request(source, tmp_path):
    base, truth = source
    labels, classes, label, _ = yolo_labels(tmp_path, truth, "1 0.5 0.5 0.2")
    records, summary = convert("yolo", images=base / "images", labels=labels, classes=classes, on_bad_record="skip")
    assert len(records) == len(truth) - 1 and label.stem not in {r["image"].removesuffix(".png") for r in records}
    assert summary.skipped["malformed annotation (image skipped)"] == 1 and summary.images == len(truth) - 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("1 2 3 4 5 6 7 ship 0", "got 7 numbers"),
        ("1 2 3 4 5 6 7 8", "got 8 numbers"),  # no class
        ("1 2 30 4 30 40 1 40 ship 2", "difficult must be 0 or 1"),
    ],
)
def test_dota_malformed(source, tmp_path, line, message):
    base, truth = source
    labels = write_dota(tmp_path, truth)
    label = labels / truth[0]["image"].replace(".png", ".txt")
    label.write_text(label.read_text() + line + "\n")
    n = len(label.read_text().splitlines())
    with pytest.raises(ValueError) as err:
        convert("dota", images=base / "images", labels=labels)
    assert str(err.value).startswith(f"{label}, line {n}: ") and message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "category, bbox, message",
    [
        ("int", [1, 2, 3, 4], "object 0: category id 2 has no name (objects.category is not a ClassLabel)"),
        ("name", [1, 2, -3, 4], "object 0: negative width -3"),
        ("name", [1, 2, 3], "object 0: bbox must be 4 numbers (coco)"),
    ],
)
def test_hf_malformed(source, tmp_path, category, bbox, message):
    from datasets import Dataset, Features, Image, List, Value

    base, truth = source
    features = Features({"image": Image(), "objects": {"bbox": List(List(Value("float32"))),
                                                       "category": List(Value("int64" if category == "int" else "string"))}})
    rows = {"image": [str(base / "images" / t["image"]) for t in truth[:2]],
            "objects": [{"bbox": [], "category": []}, {"bbox": [bbox], "category": [2 if category == "int" else "ship"]}]}
    Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError) as err:
        convert("hf", dataset=tmp_path / "bad", img_root=tmp_path / "imgs")
    assert str(err.value).startswith(f"{tmp_path / 'bad'} [train], row 1, object 0: ")
    assert message in str(err.value) and "\n" not in str(err.value)


# --- COCO results out: pycocotools scores them as the project does ---------------------------

def predictions_of(truth, img_dir, seed=0):
    """Answers of a plausible detector, in predict_bbox.py's format: per image, one per_class
    query per class present (GT boxes jittered, some missed, some far off, extra boxes) and one
    negative query; random distinct confidences."""
    rng = np.random.default_rng(seed)
    preds = []
    for t in truth:
        present = sorted({c for c, _ in t["objects"]})
        absent = sorted(set(COCO_IDS) - set(present))
        negative = [(absent[int(rng.integers(len(absent)))], "negative")] if absent else []
        for cls, mode in [(c, "class") for c in present] + negative:
            boxes = []
            for c, box in t["objects"]:
                if c == cls and rng.random() > 0.15:
                    boxes.append(np.asarray(box) + rng.normal(0, 0.08 if rng.random() < 0.3 else 0.01, 4))
            boxes += [np.sort(rng.uniform(0, 1, (2, 2)), axis=0).T.ravel()[[0, 2, 1, 3]] for _ in range(int(rng.random() < 0.4))]
            boxes = [np.clip([b[0], b[1], max(b[2], b[0] + 0.01), max(b[3], b[1] + 0.01)], 0, 1).tolist() for b in boxes]
            preds.append({"image": t["image"], "image_path": str(img_dir / t["image"]), "width": W, "height": H, "class": cls,
                          "mode": mode, "query": f"Locate every {cls}", "boxes": boxes, "scores": rng.uniform(0, 1, len(boxes)).tolist()})
    return preds


def pycocotools_ap50(gt_path, results_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_path))
    ev = COCOeval(gt, gt.loadRes(str(results_path)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[1]  # AP at IoU 0.50, all areas, 100 detections


def test_coco_results_score_as_the_project_scores(source, tmp_path):
    from trl_ground.inference.evaluate import evaluate

    base, truth = source
    coco = write_coco(tmp_path, truth, crowd=False)  # a crowd region is ignored by COCOeval, dropped by us
    records, _ = convert("coco", annotations=coco, img_root=base / "images")
    (tmp_path / "gt.json").write_text(json.dumps(records))
    preds = predictions_of(truth, base / "images")
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    ours = evaluate(tmp_path / "preds.json", tmp_path / "gt.json", base / "images")["ap50"]
    assert 0.2 < ours < 0.95  # neither trivial nor perfect

    # with the user's COCO file: its ids
    written = write_coco_results(preds, tmp_path / "a.json", coco_annotations=coco)
    results = json.loads((tmp_path / "a.json").read_text())
    assert written["boxes"] == len(results) == sum(len(p["boxes"]) for p in preds) and written["ground_truth"] == str(coco)
    assert {r["image_id"] for r in results} <= {100 + i for i in range(len(truth))}
    assert {r["category_id"] for r in results} <= set(COCO_IDS.values())
    assert pycocotools_ap50(coco, tmp_path / "a.json") == pytest.approx(ours, abs=1e-9)

    # without it: deterministic ids and the matching ground truth beside the results
    test_records, _ = load_records(tmp_path / "gt.json", base / "images")
    written = write_coco_results(preds, tmp_path / "b.json", records=test_records)
    assert written["ground_truth"] == str(tmp_path / "b.gt.json")
    gt = json.loads((tmp_path / "b.gt.json").read_text())
    assert [c["name"] for c in gt["categories"]] == sorted(COCO_IDS) and [c["id"] for c in gt["categories"]] == [1, 2, 3, 4]
    assert [i["file_name"] for i in gt["images"]] == sorted(t["image"] for t in truth) and gt["images"][0]["id"] == 1
    assert pycocotools_ap50(tmp_path / "b.gt.json", tmp_path / "b.json") == pytest.approx(ours, abs=1e-9)
    write_coco_results(preds, tmp_path / "c.json", records=test_records)
    assert (tmp_path / "c.json").read_text() == (tmp_path / "b.json").read_text()  # deterministic


def test_coco_results_pixel_boxes_and_refusals():
    gt = {"images": [{"id": 5, "file_name": "sub/a.png", "width": 200, "height": 100}], "categories": [{"id": 9, "name": "ship"}]}
    pred = {"image": "a.png", "class": "ship", "width": 1, "height": 1, "boxes": [[0.1, 0.2, 0.5, 0.6]], "scores": [0.7]}
    results, left_out = coco_results([pred, {**pred, "mode": "referring"}], gt)
    assert results == [{"image_id": 5, "category_id": 9, "bbox": [20.0, 20.0, 80.0, 40.0], "score": 0.7}] and left_out == 1
    with pytest.raises(ValueError, match="prediction 0: class 'plane' is not a category"):
        coco_results([{**pred, "class": "plane"}], gt)
    with pytest.raises(ValueError, match="prediction 0: image 'b.png' is not among"):
        coco_results([{**pred, "image": "b.png"}], gt)


# --- training straight from a source format ---------------------------------------------------

def test_training_reads_yolo_directly(tiny_model_dir, source, tmp_path):
    from trl_ground.config import parse_args
    from trl_ground.train.job import run_sft

    base, truth = source
    labels, classes = write_yolo(tmp_path, truth)
    records = load_source_records("yolo", None, base / "images", labels, classes)
    assert [r.image for r in records] == sorted(t["image"] for t in truth)

    eval_json = tmp_path / "eval.json"  # evaluation data stays a JSON file, under the same image root
    eval_json.write_text(json.dumps(convert("yolo", images=base / "images", labels=labels, classes=classes)[0][:2]))
    out = tmp_path / "run"
    args = parse_args([
        "--config", str(REPO / "configs/demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-format", "yolo", "--img-root", str(base / "images"), "--train-labels", str(labels), "--train-classes", str(classes),
        "--eval-json", str(eval_json), "--make-synthetic-data", "0", "--output-dir", str(out),
        "--max-steps", "1", "--eval-strategy", "no", "--save-strategy", "no", "--logging-steps", "1", "--num-generations", "1",
    ])
    trainer = run_sft(*args)
    assert trainer.state.global_step == 1 and (out / "final" / "model.safetensors").exists()  # the demo config: full fine-tuning
    rows = trainer.train_dataset.with_format(None)  # the columns, without loading the images
    primary = [i for i, m in zip(rows["image_id"], rows["mode"]) if m == "primary"]
    assert primary == sorted(t["image"] for t in truth if t["objects"])  # the YOLO images, not the config's train_json


def test_build_dataset_reads_coco_directly(source, tmp_path):
    from trl_ground.config import DataArguments
    from trl_ground.data.dataset import build_dataset

    base, truth = source
    coco = write_coco(tmp_path, truth)
    args = DataArguments(train_format="coco", prompt_mode="per_class")
    dataset, records = build_dataset(coco, base / "images", args, source_format="coco")
    assert [r.image for r in records] == [t["image"] for t in truth]
    rows = dataset.with_format(None)
    assert len(rows) == sum(len({c for c, _ in t["objects"]}) for t in truth)
    first = next(i for i, t in enumerate(truth) if t["objects"])
    np.testing.assert_allclose(records[first].boxes_of(truth[first]["objects"][0][0]).min(0)[:2],
                               np.array([b for c, b in truth[first]["objects"] if c == truth[first]["objects"][0][0]]).min(0)[:2], atol=1e-3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--train-format", "xml"), "train_format must be one of"),
        (("--train-format", "yolo"), "train_format yolo needs train_labels"),
        (("--train-format", "yolo", "--train-labels", "x"), "train_format yolo needs train_classes"),
        (("--train-format", "dota"), "train_format dota needs train_labels"),
    ],
)
def test_train_format_is_checked_at_parse_time(extra, message):
    from trl_ground.config import parse_args

    with pytest.raises(ValueError, match=message):
        parse_args(["--config", str(REPO / "configs/demo.yaml"), *extra])
