"""Score many answers at once: parse each, then one vectorized IoU for the whole batch.

The hybrid trainer scores every sampled answer of a step and GRPO every completion of a
batch; both go through :func:`score_answers`. Per answer only the JSON decoding and the
assignment run in Python; box conversion and IoU are single numpy calls over the batch,
which is several times faster than :func:`rewards.grounding_terms` in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import as_boxes, batched_giou, batched_iou
from .dense import DenseScore, dense_from_matrices, duplicate_mask
from .matching import check_matching, match_iou
from .parsing import ParsedAnswer, check_coord_space, parse_raw, raw_to_array, scale_to_unit
from .terms import GroundingTerms, label_mask, terms_from_counts

__all__ = ["GT_TOLERANCE", "ScoredAnswer", "score_answers"]

# Ground-truth coordinates this far outside [0, 1] are accepted (rounding noise of annotation
# tools); trl_ground's data loader clips its records with the same value (its BOX_TOLERANCE).
GT_TOLERANCE = 0.01


@dataclass(frozen=True)
class ScoredAnswer:
    """One answer: what was parsed from it, its grounding terms and (when asked for) its
    dense score (:mod:`rewards.dense`)."""

    parsed: ParsedAnswer
    terms: GroundingTerms
    dense: DenseScore | None = None


def _check_ground_truth(gts: list[np.ndarray], padded: np.ndarray) -> None:
    """Raise ``ValueError`` unless every ground-truth coordinate is finite and inside
    ``[-GT_TOLERANCE, 1 + GT_TOLERANCE]``.

    Args:
        gts: ``B`` ground truths, each ``(M_i, 4)`` xyxy.
        padded: the same as one ``(B, max M_i, 4)`` array padded with zeros (checked in two
            vectorized reductions; ``gts`` is only read to name the culprit).
    """
    if padded.size == 0 or (padded.min() >= -GT_TOLERANCE and padded.max() <= 1.0 + GT_TOLERANCE):
        return  # a NaN makes both comparisons False
    for i, g in enumerate(gts):
        if not np.isfinite(g).all():
            raise ValueError(f"gt_boxes[{i}] holds a non-finite coordinate: {g.tolist()}")
        low, high = (g.min(), g.max()) if g.size else (0.0, 0.0)
        if low < -GT_TOLERANCE or high > 1.0 + GT_TOLERANCE:
            if high > 1000.0 + GT_TOLERANCE:
                cause = "looks like pixel coordinates; "
            elif high > 1.0 + GT_TOLERANCE and low >= -GT_TOLERANCE:
                cause = "looks like 0..1000 Qwen coordinates; "
            else:
                cause = ""
            raise ValueError(
                f"gt_boxes[{i}] = {g.tolist()} lies outside [0, 1] (tolerance {GT_TOLERANCE}): "
                f"{cause}gt_boxes must be normalized to [0, 1]"
            )


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
    dense: bool = False,
    giou_weight: float = 0.5,
    duplicate_iou: float = 0.7,
    dense_norm: str = "f1",
) -> list[ScoredAnswer]:
    """Parse and score a batch of answers.

    Args:
        texts: ``B`` answers (strings; anything else parses to no boxes).
        gt_boxes: ``B`` ground truths, each ``(M_i, 4)`` xyxy in [0, 1] (finite, at most
            :data:`GT_TOLERANCE` outside).
        iou_threshold, method: matching settings (:func:`rewards.grounding_terms`).
        coord_space: ``"qwen"`` or ``"norm"`` (see :func:`rewards.parse_boxes`).
        query_labels: optional ``B`` queried classes for label-aware matching.
        dense: also compute each answer's :class:`~rewards.dense.DenseScore`, with
            ``giou_weight``, ``duplicate_iou`` and ``dense_norm`` (see :mod:`rewards.dense`).
    Returns:
        ``B`` :class:`ScoredAnswer`, in order.
    Raises:
        ValueError: bad arguments: lengths that differ, a ground truth that is not ``(M, 4)``,
            non-finite or outside [0, 1] (never for the texts).
    """
    if len(texts) != len(gt_boxes):
        raise ValueError(f"{len(texts)} answers but {len(gt_boxes)} ground truths")
    if query_labels is not None and len(query_labels) != len(texts):
        raise ValueError(f"{len(texts)} answers but {len(query_labels)} query labels")
    check_matching(iou_threshold, method)
    check_coord_space(coord_space)
    if coord_space == "pixel":
        raise ValueError("score_answers needs answers in 'qwen' or 'norm' space")
    gts = _as_ground_truths(gt_boxes)
    gt_padded = _pad(gts)
    _check_ground_truth(gts, gt_padded)
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
    n_pred = np.array([len(p) for p in preds])
    n_gt = np.array([len(g) for g in gts])
    pred_padded = _pad(preds)
    iou = batched_iou(pred_padded, gt_padded)
    allowed = None
    if query_labels is not None:
        allowed = _label_masks(pred_labels, query_labels, iou.shape[1])
        iou = iou * allowed[:, :, None]
    denses = _dense_scores(pred_padded, gt_padded, iou, n_pred, n_gt, allowed, method, giou_weight, duplicate_iou, dense_norm) if dense else None
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
        out.append(ScoredAnswer(ParsedAnswer(pred, labs, raw[2], raw[3]), terms, None if denses is None else denses[i]))
    return out


def _dense_scores(pred, gt, iou, n_pred, n_gt, allowed, method, giou_weight, duplicate_iou, norm) -> list[DenseScore]:
    """Each answer's dense score from the padded batch: ``pred (B, N, 4)``, ``gt (B, M, 4)``,
    ``iou (B, N, M)`` (label mask applied), one GIoU and one self-IoU call for the batch."""
    giou = batched_giou(pred, gt)
    self_iou = batched_iou(pred, pred)
    out = []
    for i in range(len(n_pred)):
        n, m = int(n_pred[i]), int(n_gt[i])
        ok = None if allowed is None else allowed[i, :n].astype(bool)
        duplicate = duplicate_mask(self_iou[i, :n, :n], duplicate_iou)
        out.append(dense_from_matrices(iou[i, :n, :m], giou[i, :n, :m], duplicate, giou_weight, method, ok, norm))
    return out


def _as_ground_truths(gt_boxes) -> list[np.ndarray]:
    """``B`` ground truths as ``(M_i, 4)`` arrays; a bad shape names its index."""
    try:
        return [as_boxes(g) for g in gt_boxes]
    except (ValueError, TypeError):
        for i, g in enumerate(gt_boxes):
            try:
                as_boxes(g)
            except (ValueError, TypeError) as err:
                raise ValueError(f"gt_boxes[{i}]: {err}") from None
        raise


def _label_masks(pred_labels: list, query_labels, width: int) -> np.ndarray:
    """``(B, width)`` float: 1 where a prediction may match its answer's queried class."""
    mask = np.ones((len(pred_labels), width))
    for i, (labs, query) in enumerate(zip(pred_labels, query_labels)):
        if query is not None and labs:
            mask[i, : len(labs)] = label_mask(labs, query, len(labs))
    return mask
