"""Predictions -> the COCO results format, for scoring with pycocotools.

A COCO results file is a JSON list with one entry per predicted box::

    {"image_id": 17, "category_id": 3, "bbox": [x, y, w, h], "score": 0.83}

``bbox`` in pixels of the image, ``(x, y)`` its top-left corner; ``score`` is the box's
confidence from :mod:`trl_ground.inference.predict` (``scores``). The ids are those of a COCO ground
truth: the user's own file (images matched by ``file_name`` against the prediction's
``image``, categories by name), or, without one, a ground truth built here from the test
records with deterministic ids (images sorted by name from 1, categories sorted by name
from 1, annotations in that order from 1), which is written beside the results.

Only class queries become results (``primary``, ``per_class``, ``negative``); a referring
query asks for one described object, which COCO's per-category evaluation has no place for,
so those answers are left out (and counted).
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import image_size
from .coco import read_coco

__all__ = ["coco_ground_truth", "coco_results", "write_coco_results"]

_DECIMALS = 3


def coco_ground_truth(records: list, predictions: list[dict] = ()) -> dict:
    """A COCO ground truth (``images``, ``annotations``, ``categories``) with deterministic ids.

    Args:
        records: :class:`~trl_ground.data.records.GroundingRecord` s (their images and boxes; image sizes read from the files).
        predictions: prediction dicts; their images and classes are added when the records lack them
            (a folder of images without ground truth), sized by their ``width`` / ``height``.
    Returns:
        The COCO dict; ``bbox`` pixel ``[x, y, w, h]``, ``area`` ``w * h``, ``iscrowd`` 0.
    """
    sizes, boxes = {}, {}
    for rec in records:
        sizes[rec.image] = image_size(rec.image_path, f"record {rec.index} ({rec.image!r})")
        boxes[rec.image] = [(o.cls, o.box) for o in rec.objects]
    for p in predictions:
        if p["image"] not in sizes:
            sizes[p["image"]] = (p["width"], p["height"])
            boxes[p["image"]] = []
    classes = sorted({c for objs in boxes.values() for c, _ in objs} | {p["class"] for p in predictions})
    category_ids = {c: i for i, c in enumerate(classes, start=1)}
    images, annotations = [], []
    for image_id, name in enumerate(sorted(sizes), start=1):
        width, height = sizes[name]
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for cls, (x1, y1, x2, y2) in boxes[name]:
            bbox = [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_ids[cls],
                                "bbox": [round(v, _DECIMALS) for v in bbox], "area": bbox[2] * bbox[3], "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": [{"id": i, "name": c} for c, i in category_ids.items()]}


def coco_results(predictions: list[dict], coco_gt: dict) -> tuple[list[dict], int]:
    """``(results, left_out)``: one COCO result per predicted box, and how many referring
    answers were left out.

    Args:
        predictions: :func:`trl_ground.inference.predict.predict` outputs: ``image``, ``image_path``,
            ``class``, ``boxes`` (``(N, 4)`` xyxy in [0, 1]), ``scores`` ``(N,)``, ``mode``.
        coco_gt: the COCO ground truth whose image and category ids the results use.
    Raises:
        ValueError when a prediction's image or class is not in ``coco_gt``.
    """
    by_name = {img["file_name"]: img for img in coco_gt["images"]}
    by_base: dict = {}
    for img in coco_gt["images"]:
        by_base.setdefault(Path(img["file_name"]).name, []).append(img)
    categories = {c["name"]: c["id"] for c in coco_gt["categories"]}
    results, left_out = [], 0
    for i, p in enumerate(predictions):
        if p.get("mode") == "referring":
            left_out += 1
            continue
        img = by_name.get(p["image"])
        if img is None and len(by_base.get(Path(p["image"]).name, [])) == 1:
            img = by_base[Path(p["image"]).name][0]
        if img is None:
            raise ValueError(f"prediction {i}: image {p['image']!r} is not among the COCO ground truth's images (file_name)")
        if p["class"] not in categories:
            raise ValueError(f"prediction {i}: class {p['class']!r} is not a category of the COCO ground truth ({sorted(categories)})")
        width, height = img.get("width") or p["width"], img.get("height") or p["height"]
        for (x1, y1, x2, y2), score in zip(p["boxes"], p["scores"]):
            bbox = [x1 * width, y1 * height, max(x2 - x1, 0.0) * width, max(y2 - y1, 0.0) * height]
            results.append({"image_id": img["id"], "category_id": categories[p["class"]],
                            "bbox": [round(v, _DECIMALS) for v in bbox], "score": round(float(score), 6)})
    return results, left_out


def write_coco_results(predictions: list[dict], out, coco_annotations=None, records=None, gt_out=None) -> dict:
    """Write ``out`` (COCO results); without ``coco_annotations`` also the matching ground truth.

    Args:
        predictions: see :func:`coco_results`.
        out: the results file to write.
        coco_annotations: the user's COCO ground truth file (its ids are used); or None.
        records: without ``coco_annotations``: the test records that the ground truth is built from (may be empty).
        gt_out: where that ground truth goes (default: ``out`` with the suffix ``.gt.json``).
    Returns:
        ``{"results": path, "ground_truth": path, "boxes": n, "left_out_referring": n}``.
    """
    if coco_annotations is not None:
        gt, gt_path = read_coco(coco_annotations), Path(coco_annotations)
    else:
        gt, gt_path = coco_ground_truth(records or [], predictions), Path(gt_out or Path(out).with_suffix(".gt.json"))
    results, left_out = coco_results(predictions, gt)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results))
    if coco_annotations is None:
        gt_path.write_text(json.dumps(gt))
    return {"results": str(out), "ground_truth": str(gt_path), "boxes": len(results), "left_out_referring": left_out}
