"""Detection metrics over a set of grounding answers (numpy only).

Inputs are per-example :class:`Example` s: the queried class, ground-truth boxes, predicted
boxes with confidences, all xyxy in [0, 1].

- Precision / recall / F1 / mean IoU: per-example one-to-one matching from ``rewards``
  (Hungarian, IoU >= threshold), summed over examples (micro average).
- AP: COCO's definition per class (detections of all examples ranked by confidence, each
  matched greedily in that order to the unmatched ground-truth box of highest IoU, 101-point
  interpolated precision), averaged over the classes that have ground truth.
- :func:`answer_statistics`: the same split by prompt type (queries whose ground truth has
  boxes / has none), and how the answers look (empty, hallucinated, unparseable, duplicated
  boxes, length).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rewards import grounding_terms, iou_matrix
from rewards.dense import duplicate_mask

__all__ = ["DUPLICATE_IOU", "Example", "answer_statistics", "average_precision", "count_metrics", "duplicate_boxes", "mean_average_precision"]

# A predicted box overlapping an earlier box of the same answer by more than this is a duplicate.
DUPLICATE_IOU = 0.7

_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class Example:
    """One query and its answer.

    ``gt`` ``(M, 4)`` and ``pred`` ``(N, 4)``: boxes xyxy in [0, 1]; ``scores`` ``(N,)``.
    ``answered`` is False for a query without a prediction (scored as an empty answer);
    ``num_tokens``: tokens generated for the answer, None when unknown.
    """

    key: str
    cls: str
    gt: np.ndarray
    pred: np.ndarray
    scores: np.ndarray
    mode: str = "primary"
    is_unique: bool | None = None
    valid_json: bool = True
    truncated: bool = False
    extra: dict = field(default_factory=dict)
    answered: bool = True
    num_tokens: int | None = None


def count_metrics(examples: list[Example], iou_threshold: float = 0.5) -> dict:
    """Micro-averaged precision, recall, F1 and the mean IoU of matched pairs."""
    tp = fp = fn = 0
    iou_sum = 0.0
    for ex in examples:
        t = grounding_terms(ex.pred, ex.gt, iou_threshold=iou_threshold)
        tp += t.n_matched
        fp += int(t.fp)
        fn += int(t.fn)
        iou_sum += t.mean_iou * t.n_matched
    precision = tp / (tp + fp) if tp + fp else (1.0 if tp + fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_iou": iou_sum / tp if tp else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def query_counts(examples: list[Example], iou_threshold: float = 0.5) -> dict:
    """Per query, in ``examples``' order: what the micro-averaged metrics are sums of, so that
    they can be resampled (a paired bootstrap over queries).

    Returns lists ``key``, ``positive`` (the ground truth has boxes), ``tp``, ``fp``, ``fn``
    (matching at ``iou_threshold``, as :func:`count_metrics`) and ``n_pred`` (boxes answered).
    """
    out = {"key": [], "positive": [], "tp": [], "fp": [], "fn": [], "n_pred": []}
    for ex in examples:
        t = grounding_terms(ex.pred, ex.gt, iou_threshold=iou_threshold)
        for name, value in (("key", ex.key), ("positive", bool(len(ex.gt))), ("tp", int(t.n_matched)), ("fp", int(t.fp)),
                            ("fn", int(t.fn)), ("n_pred", int(len(ex.pred)))):
            out[name].append(value)
    return out


def average_precision(examples: list[Example], iou_threshold: float = 0.5) -> float | None:
    """COCO AP of one class over ``examples``; None when there is no ground truth."""
    n_gt = sum(len(ex.gt) for ex in examples)
    if n_gt == 0:
        return None
    detections = []  # (score, example index, box index)
    for e, ex in enumerate(examples):
        for b, score in enumerate(ex.scores):
            detections.append((-float(score), e, b))
    if not detections:
        return 0.0
    detections.sort(key=lambda d: d[0])  # stable: ties keep example order, as COCO's mergesort
    used = [np.zeros(len(ex.gt), dtype=bool) for ex in examples]
    ious = [iou_matrix(ex.pred, ex.gt) for ex in examples]
    is_tp = np.zeros(len(detections))
    for i, (_, e, b) in enumerate(detections):
        row = np.where(used[e], -1.0, ious[e][b]) if len(examples[e].gt) else np.zeros(0)
        if row.size and row.max() >= iou_threshold:
            used[e][int(row.argmax())] = True
            is_tp[i] = 1.0
    tp = np.cumsum(is_tp)
    fp = np.cumsum(1.0 - is_tp)
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone, as COCO
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def mean_average_precision(examples: list[Example], iou_threshold: float = 0.5) -> tuple[float, dict]:
    """``(mean over classes with ground truth, {class: AP})``."""
    per_class = {}
    for cls in sorted({ex.cls for ex in examples}):
        ap = average_precision([ex for ex in examples if ex.cls == cls], iou_threshold)
        if ap is not None:
            per_class[cls] = ap
    return (float(np.mean(list(per_class.values()))) if per_class else 0.0), per_class


def duplicate_boxes(boxes: np.ndarray, iou_threshold: float = DUPLICATE_IOU) -> int:
    """How many boxes of one answer have IoU >= ``iou_threshold`` with an earlier box of it
    (the dense score's rule, :func:`rewards.dense.duplicate_mask`).

    Args:
        boxes: ``(N, 4)`` xyxy in [0, 1], in the order the answer wrote them.
    """
    return int(duplicate_mask(iou_matrix(boxes, boxes), iou_threshold).sum())


def _fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def answer_statistics(examples: list[Example]) -> dict:
    """Metrics split by prompt type, and the shape of the answers.

    Returns a dict with:
        ``with_boxes``: over the queries whose ground truth has boxes: ``queries``,
            ``precision``, ``recall``, ``f1``, ``mean_iou`` (IoU 0.5), ``ap50`` and
            ``empty_fraction_positive`` (the share of answers with no box);
        ``without_boxes``: over the queries whose ground truth is empty (negatives):
            ``queries``, ``pred_boxes`` and ``hallucination_fraction_negative`` (the share of
            answers with any box);
        ``empty_fraction_positive``, ``hallucination_fraction_negative``: the same two, at
            the top level;
        ``unparseable_fraction``: answers that did not parse and gave no box, over all queries;
        ``duplicate_fraction``: predicted boxes with IoU > :data:`DUPLICATE_IOU` with an
            earlier box of the same answer, over all predicted boxes;
        ``tokens_per_answer``: the mean ``num_tokens`` of the answers that carry it.
    Unanswered queries count as empty answers. A fraction over nothing is None.
    """
    positive = [e for e in examples if len(e.gt)]
    negative = [e for e in examples if not len(e.gt)]
    m = count_metrics(positive, 0.5)
    ap50, _ = mean_average_precision(positive, 0.5)
    empty = _fraction(sum(1 for e in positive if not len(e.pred)), len(positive))
    hallucinated = _fraction(sum(1 for e in negative if len(e.pred)), len(negative))
    tokens = [e.num_tokens for e in examples if e.answered and e.num_tokens is not None]
    return {
        "with_boxes": {
            "queries": len(positive),
            **{k: (m[k] if positive else None) for k in ("precision", "recall", "f1", "mean_iou")},
            "ap50": ap50 if positive else None,
            "empty_fraction_positive": empty,
        },
        "without_boxes": {
            "queries": len(negative),
            "pred_boxes": int(sum(len(e.pred) for e in negative)),
            "hallucination_fraction_negative": hallucinated,
        },
        "empty_fraction_positive": empty,
        "hallucination_fraction_negative": hallucinated,
        "unparseable_fraction": _fraction(sum(1 for e in examples if not e.valid_json and not len(e.pred)), len(examples)),
        "duplicate_fraction": _fraction(sum(duplicate_boxes(e.pred) for e in examples), int(sum(len(e.pred) for e in examples))),
        "tokens_per_answer": float(np.mean(tokens)) if tokens else None,
    }
