"""Score predictions (``predict_bbox.py``'s outputs, or a file in the seed's format) against
a ground-truth JSON: precision / recall / F1 / mean IoU at IoU 0.5 and 0.75, AP50 / AP75
ranked by the confidences, Acc@0.5 of referring queries (unique / non-unique objects), a
per-class table and the counts of unparseable and truncated answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import DataArguments, build_examples
from .metrics import Example, count_metrics, mean_average_precision
from .records import load_records

__all__ = ["evaluate", "load_predictions", "markdown_report"]


def _is_seed_format(data: list) -> bool:
    return bool(data) and isinstance(data[0], dict) and "objects" in data[0]


def load_predictions(path) -> list[dict]:
    """Prediction entries ``{"image", "class", "boxes", "scores", ...}`` from our outputs
    file or from a file in the seed's format (every box of every class of an image, score 1)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list")
    if not _is_seed_format(data):
        return data
    out = []
    for rec in data:
        by_class: dict[str, list] = {}
        for obj in rec.get("objects", []):
            by_class.setdefault(obj["class"], []).append(obj["bbox_aabb"])
        for cls, boxes in by_class.items():
            out.append({"image": rec["image"], "class": cls, "boxes": boxes, "scores": [1.0] * len(boxes), "mode": "class"})
    return out


def _key(image: str, cls: str, mode: str | None, query: str | None) -> tuple:
    return (image, query) if mode == "referring" else (image, cls)


def _ground_truth(gt_json, img_root, modes: set[str]) -> dict[tuple, dict]:
    """Examples of the ground-truth file for the prompt modes the predictions use."""
    records, _ = load_records(gt_json, img_root, check_images=False)
    examples = {}
    for mode in sorted(modes):
        prompt_mode = {"class": "per_class", "primary": "per_class", "negative": "per_class"}.get(mode, mode)
        for row in build_examples(records, DataArguments(prompt_mode=prompt_mode)):
            query = row["prompt"][-1]["content"]
            examples.setdefault(_key(row["image_id"], row["class"], row["mode"], query), row)
    return examples


def evaluate(pred_path, gt_json, img_root=None) -> dict:
    """The metrics dict written to ``metrics.json`` (top-level ``precision``, ``recall``,
    ``f1``, ``mean_iou``, ``ap50`` at IoU 0.5)."""
    preds = load_predictions(pred_path)
    img_root = img_root or Path(gt_json).parent
    modes = {p.get("mode") or "class" for p in preds}
    truth = _ground_truth(gt_json, img_root, modes)
    examples = []
    seen = set()
    for p in preds:
        key = _key(p["image"], p["class"], p.get("mode"), p.get("query"))
        row = truth.get(key)
        gt = np.asarray(row["gt_boxes"] if row else [], dtype=np.float64).reshape(-1, 4)
        seen.add(key)
        boxes = np.asarray(p.get("boxes", []), dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(p.get("scores") or [1.0] * len(boxes), dtype=np.float64)
        examples.append(
            Example(str(key), p["class"], gt, boxes, scores, p.get("mode") or "class", p.get("is_unique"),
                    p.get("valid_json", True), p.get("truncated", False))
        )
    # Ground truth nobody answered counts as an empty prediction (only for modes predicted).
    for key, row in truth.items():
        if key not in seen and (row["mode"] in modes or "class" in modes and row["mode"] == "class"):
            examples.append(Example(str(key), row["class"], np.asarray(row["gt_boxes"]).reshape(-1, 4), np.zeros((0, 4)), np.zeros(0), row["mode"], row["is_unique"]))
    return _report(examples)


def _report(examples: list[Example]) -> dict:
    at50, at75 = count_metrics(examples, 0.5), count_metrics(examples, 0.75)
    ap50, ap50_per_class = mean_average_precision(examples, 0.5)
    ap75, _ = mean_average_precision(examples, 0.75)
    per_class = {}
    for cls in sorted({ex.cls for ex in examples}):
        sub = [ex for ex in examples if ex.cls == cls]
        m = count_metrics(sub, 0.5)
        per_class[cls] = {**{k: m[k] for k in ("precision", "recall", "f1", "mean_iou")}, "ap50": ap50_per_class.get(cls),
                          "gt_boxes": int(sum(len(e.gt) for e in sub)), "pred_boxes": int(sum(len(e.pred) for e in sub))}
    return {
        "precision": at50["precision"],
        "recall": at50["recall"],
        "f1": at50["f1"],
        "mean_iou": at50["mean_iou"],
        "ap50": ap50,
        "ap75": ap75,
        "at_iou_0.75": {k: at75[k] for k in ("precision", "recall", "f1", "mean_iou")},
        "counts": {
            "examples": len(examples),
            "tp": at50["tp"], "fp": at50["fp"], "fn": at50["fn"],
            "unparseable_answers": sum(1 for e in examples if not e.valid_json and len(e.pred) == 0),
            "truncated_answers": sum(1 for e in examples if e.truncated),
        },
        "referring": _referring_accuracy(examples),
        "per_class": per_class,
    }


def _referring_accuracy(examples: list[Example]) -> dict:
    """Acc@0.5 of referring queries (the highest-scoring box against the one target), split
    into unique and non-unique objects as VRSBench reports."""
    from rewards import iou_matrix

    out = {}
    for name, flag in (("unique", True), ("non_unique", False)):
        sub = [e for e in examples if e.mode == "referring" and bool(e.is_unique) == flag]
        hits = [len(e.pred) > 0 and iou_matrix(e.pred[[int(np.argmax(e.scores))]], e.gt).max() >= 0.5 for e in sub if len(e.gt)]
        out[name] = {"acc@0.5": (float(np.mean(hits)) if hits else None), "count": len(hits)}
    return out


def markdown_report(metrics: dict) -> str:
    """The metrics as Markdown tables."""

    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = [
        "| IoU | precision | recall | F1 | mean IoU | AP |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| 0.50 | {fmt(metrics['precision'])} | {fmt(metrics['recall'])} | {fmt(metrics['f1'])} | {fmt(metrics['mean_iou'])} | {fmt(metrics['ap50'])} |",
        "| 0.75 | " + " | ".join(fmt(metrics["at_iou_0.75"][k]) for k in ("precision", "recall", "f1", "mean_iou")) + f" | {fmt(metrics['ap75'])} |",
        "",
        "| class | precision | recall | F1 | mean IoU | AP50 | GT boxes | predicted |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cls, m in metrics["per_class"].items():
        lines.append(f"| {cls} | " + " | ".join(fmt(m[k]) for k in ("precision", "recall", "f1", "mean_iou", "ap50", "gt_boxes", "pred_boxes")) + " |")
    c, r = metrics["counts"], metrics["referring"]
    lines += [
        "",
        f"examples {c['examples']}, unparseable answers {c['unparseable_answers']}, truncated answers {c['truncated_answers']}",
    ]
    if r["unique"]["count"] or r["non_unique"]["count"]:
        lines.append(f"referring Acc@0.5: unique {fmt(r['unique']['acc@0.5'])} ({r['unique']['count']}), "
                     f"non-unique {fmt(r['non_unique']['acc@0.5'])} ({r['non_unique']['count']})")
    return "\n".join(lines)
