"""Score many answers at once: parse each, then one vectorized IoU for the whole batch.

The hybrid trainer scores every sampled answer of a step and GRPO every completion of a
batch; both go through :func:`score_answers`. Per answer only the JSON decoding and the
assignment run in Python; box conversion and IoU are single numpy calls over the batch,
which is several times faster than :func:`rewards.grounding_terms` in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import as_boxes, batched_iou
from .boxes import finite_or_empty as finite_or_empty_rows
from .matching import check_matching, match_iou
from .parsing import ParsedAnswer, check_coord_space, parse_raw, raw_to_array, scale_to_unit
from .terms import GroundingTerms, label_mask, terms_from_counts

__all__ = ["ScoredAnswer", "score_answers"]


@dataclass(frozen=True)
class ScoredAnswer:
    """One answer: what was parsed from it and its grounding terms."""

    parsed: ParsedAnswer
    terms: GroundingTerms


def finite_or_empty_batch(boxes: np.ndarray) -> np.ndarray:
    """``(B, M, 4)``: a box with a non-finite coordinate becomes the empty box."""
    return finite_or_empty_rows(boxes.reshape(-1, 4)).reshape(boxes.shape)


def _pad(chunks: list[np.ndarray]) -> np.ndarray:
    """List of ``(n_i, 4)`` -> ``(B, max n_i, 4)`` padded with empty boxes."""
    out = np.zeros((len(chunks), max((len(c) for c in chunks), default=0), 4))
    for i, c in enumerate(chunks):
        out[i, : len(c)] = c
    return out


def score_answers(
    texts,
    gt_boxes,
    iou_threshold: float = 0.5,
    method: str = "hungarian",
    coord_space: str = "qwen",
    query_labels=None,
) -> list[ScoredAnswer]:
    """Parse and score a batch of answers.

    Args:
        texts: ``B`` answers (strings; anything else parses to no boxes).
        gt_boxes: ``B`` ground truths, each ``(M_i, 4)`` xyxy in [0, 1].
        iou_threshold, method: matching settings (:func:`rewards.grounding_terms`).
        coord_space: ``"qwen"`` or ``"norm"`` (see :func:`rewards.parse_boxes`).
        query_labels: optional ``B`` queried classes for label-aware matching.
    Returns:
        ``B`` :class:`ScoredAnswer`, in order.
    """
    if len(texts) != len(gt_boxes):
        raise ValueError(f"{len(texts)} answers but {len(gt_boxes)} ground truths")
    check_matching(iou_threshold, method)
    check_coord_space(coord_space)
    if coord_space == "pixel":
        raise ValueError("score_answers needs answers in 'qwen' or 'norm' space")
    raws = [parse_raw(t) for t in texts]
    flat = raw_to_array([box for raw in raws for box in raw[0]])
    finite = np.isfinite(flat).all(axis=1)
    all_finite = bool(finite.all())
    flat = scale_to_unit(flat, coord_space)
    preds, pred_labels, start = [], [], 0
    for boxes, labels, _, _ in raws:
        end = start + len(boxes)
        pred, labs = flat[start:end], labels
        if not all_finite and not finite[start:end].all():
            keep = finite[start:end]
            pred, labs = pred[keep], [lab for lab, k in zip(labels, keep) if k]
        preds.append(pred)
        pred_labels.append(tuple(labs))
        start = end
    gts = [as_boxes(g) for g in gt_boxes]
    n_pred = np.array([len(p) for p in preds])
    n_gt = np.array([len(g) for g in gts])
    iou = batched_iou(_pad(preds), finite_or_empty_batch(_pad(gts)))
    if query_labels is not None:
        iou = iou * _label_masks(pred_labels, query_labels, iou.shape[1])[:, :, None]
    # Pairs at or above the threshold, padding excluded (it matters when the threshold is 0).
    valid = (np.arange(iou.shape[1]) < n_pred[:, None])[:, :, None] & (np.arange(iou.shape[2]) < n_gt[:, None])[:, None, :]
    eligible = (iou >= iou_threshold) & valid
    # Where no box has two eligible partners, every eligible pair is matched by both
    # matchers: the counts and IoU sums come straight from the batch, no assignment needed.
    conflict = (eligible.sum(axis=2) > 1).any(axis=1) | (eligible.sum(axis=1) > 1).any(axis=1)
    k_all = eligible.sum(axis=(1, 2)).tolist()
    iou_sum_all = (iou * eligible).sum(axis=(1, 2)).tolist()
    out = []
    for i, (raw, pred, labs) in enumerate(zip(raws, preds, pred_labels)):
        n, m = int(n_pred[i]), int(n_gt[i])
        k, iou_sum = k_all[i], iou_sum_all[i]
        if conflict[i]:
            sub = iou[i, :n, :m]
            p_idx, g_idx = match_iou(sub, iou_threshold, method, finite=True)
            k, iou_sum = len(p_idx), float(sub[p_idx, g_idx].sum())
        terms = terms_from_counts(n, m, k, iou_sum)
        out.append(ScoredAnswer(ParsedAnswer(pred, labs, raw[2], raw[3]), terms))
    return out


def _label_masks(pred_labels: list, query_labels, width: int) -> np.ndarray:
    """``(B, width)`` float: 1 where a prediction may match its answer's queried class."""
    mask = np.ones((len(pred_labels), width))
    for i, (labs, query) in enumerate(zip(pred_labels, query_labels)):
        if query is not None and labs:
            mask[i, : len(labs)] = label_mask(labs, query, len(labs))
    return mask
