import json

import numpy as np
import pytest

from trl_ground.inference.evaluate import evaluate, markdown_report
from trl_ground.inference.metrics import Example, average_precision, count_metrics
from trl_ground.inference.predict import box_confidences


def ex(key, cls, gt, pred, scores):
    return Example(key, cls, np.asarray(gt, float).reshape(-1, 4), np.asarray(pred, float).reshape(-1, 4), np.asarray(scores, float))


CRAFTED = [
    ex("a", "ship", [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.7, 0.7]], [[0.1, 0.1, 0.3, 0.31], [0.0, 0.8, 0.1, 0.9], [0.52, 0.5, 0.7, 0.7]], [0.9, 0.8, 0.3]),
    ex("b", "ship", [[0.2, 0.2, 0.4, 0.4]], [[0.6, 0.6, 0.8, 0.8], [0.2, 0.21, 0.4, 0.4]], [0.95, 0.5]),
    ex("c", "car", [[0.0, 0.0, 0.5, 0.5]], [[0.0, 0.0, 0.5, 0.45], [0.0, 0.0, 0.5, 0.5]], [0.6, 0.7]),
]


def coco_ap(examples, iou):
    """AP from pycocotools on the same detections (the reference evaluator)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = sorted({e.cls for e in examples})
    images = sorted({e.key for e in examples})
    gt = {"images": [{"id": i + 1, "width": 1000, "height": 1000} for i in range(len(images))],
          "categories": [{"id": c + 1, "name": n} for c, n in enumerate(cats)], "annotations": []}
    dets = []
    for e in examples:
        img, cat = images.index(e.key) + 1, cats.index(e.cls) + 1
        for b in e.gt * 1000:
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": img, "category_id": cat, "iscrowd": 0,
                                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s in zip(e.pred * 1000, e.scores):
            dets.append({"image_id": img, "category_id": cat, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)})
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.params.iouThrs = np.array([iou])
    ev.params.areaRng = [[0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    ev.params.maxDets = [100]
    ev.evaluate()
    ev.accumulate()
    p = ev.eval["precision"][0, :, :, 0, 0]  # (recall thresholds, categories)
    return {c: float(p[:, k].mean()) for k, c in enumerate(cats)}


@pytest.mark.parametrize("iou", [0.5, 0.75])
def test_ap_agrees_with_pycocotools(iou):
    pytest.importorskip("pycocotools")
    ref = coco_ap(CRAFTED, iou)
    for cls, value in ref.items():
        ours = average_precision([e for e in CRAFTED if e.cls == cls], iou)
        assert ours == pytest.approx(value, abs=1e-9), cls
    assert 0 < ref["ship"] < 1  # the crafted case is not trivial


def test_count_metrics_hand_computed():
    m = count_metrics(CRAFTED, 0.5)
    # a: 2 matched, 1 FP; b: 1 matched, 1 FP; c: 1 matched (the better box), 1 FP
    assert (m["tp"], m["fp"], m["fn"]) == (4, 3, 0)
    assert m["precision"] == pytest.approx(4 / 7) and m["recall"] == 1.0


@pytest.fixture()
def gt_file(tmp_path):
    objects = [{"class": "ship", "bbox_aabb": [0.1, 0.1, 0.3, 0.3], "is_unique": True, "obj_size": "small", "obj_position": "top left"},
               {"class": "ship", "bbox_aabb": [0.5, 0.5, 0.7, 0.7], "is_unique": True, "obj_size": "large", "obj_position": "center"},
               {"class": "car", "bbox_aabb": [0.7, 0.1, 0.9, 0.2], "is_unique": True}]
    path = tmp_path / "test.json"
    path.write_text(json.dumps([{"image": "a.png", "objects": objects}, {"image": "b.png", "objects": objects[2:]}]))
    return path


def test_ground_truth_scored_against_itself_is_perfect(gt_file):
    m = evaluate(gt_file, gt_file)
    for key in ("precision", "recall", "f1", "mean_iou", "ap50", "ap75"):
        assert m[key] == pytest.approx(1.0), key
    assert all(v["f1"] == 1.0 for v in m["per_class"].values())
    assert "| 0.50 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in markdown_report(m)


def test_empty_predictions_have_zero_recall(gt_file, tmp_path):
    preds = [{"image": "a.png", "class": "ship", "boxes": [], "scores": [], "mode": "primary", "valid_json": True},
             {"image": "b.png", "class": "car", "boxes": [], "scores": [], "mode": "primary", "valid_json": False}]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    m = evaluate(tmp_path / "p.json", gt_file)
    assert m["recall"] == 0.0 and m["ap50"] == 0.0 and m["counts"]["fn"] == 3
    assert m["counts"]["unparseable_answers"] == 1


def test_referring_accuracy_uses_the_top_box(gt_file, tmp_path):
    q = 'Locate the small ship at the top left in the image. Answer with a JSON list holding one {"bbox_2d": [x1, y1, x2, y2], "label": "ship"} using coordinates from 0 to 1000.'
    preds = [{"image": "a.png", "class": "ship", "query": q, "mode": "referring", "is_unique": True,
              "boxes": [[0.5, 0.5, 0.7, 0.7], [0.1, 0.1, 0.3, 0.3]], "scores": [0.2, 0.9]}]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    m = evaluate(tmp_path / "p.json", gt_file)
    assert m["referring"]["unique"]["count"] == 4  # every unique object (3 + 1) is a referring query
    assert m["referring"]["unique"]["acc@0.5"] == pytest.approx(1 / 4)  # only the answered one is right


def test_box_confidences_follow_the_coordinate_token_logprobs():
    text = '[{"bbox_2d": [10, 20, 30, 40], "label": "a"}, {"bbox_2d": [1, 2, 3, 4]}]'
    tokens = list(text)  # one character per token, digits included
    logprobs = np.full(len(tokens), -0.01)
    second = text.index("[1,")
    for i in range(second, second + len("[1, 2, 3, 4]")):
        if text[i].isdigit():
            logprobs[i] = -2.0  # the model hesitated on every digit of box 2
    conf = box_confidences(tokens, logprobs, text, 2)
    assert conf[0] == pytest.approx(np.exp(-0.01)) and conf[1] == pytest.approx(np.exp(-2.0))
    assert ((conf >= 0) & (conf <= 1)).all()
    # boxes the parser found but that are not locatable in the text: the answer's mean probability
    assert box_confidences(["x"], np.array([-1.0]), "x", 1).tolist() == [pytest.approx(np.exp(-1.0))]
