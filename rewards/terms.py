"""Per-sample grounding terms: the numbers the hybrid loss and the GRPO rewards are made of.

For one answer with ``N`` predicted and ``M`` ground-truth boxes and ``K`` matched pairs:

- ``iou_loss = 1 - mean IoU of the K pairs``; 1 when ``K = 0``; 0 when ``N = M = 0``.
- ``fp = N - K`` (unmatched predictions), ``fn = M - K`` (unmatched ground truth).
- ``precision = K / N``, ``recall = K / M``, ``f1`` their harmonic mean; a sample with
  ``N = M = 0`` is perfect (all 1), a side that is empty while the other is not gives 0.

The weighted cost of these terms is :meth:`rewards.ScoringSettings.counts_cost`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .boxes import as_boxes, iou_matrix
from .matching import match_iou

__all__ = ["GroundingTerms", "grounding_terms", "terms_from_counts", "terms_from_iou"]


@dataclass(frozen=True)
class GroundingTerms:
    """Scores of one answer against its ground truth (see the module docstring)."""

    iou_loss: float
    fp: float
    fn: float
    precision: float
    recall: float
    f1: float
    mean_iou: float
    n_pred: int
    n_gt: int
    n_matched: int

    def as_dict(self) -> dict:
        return asdict(self)


def label_mask(pred_labels, query_label, n_pred: int) -> np.ndarray:
    """``(N,)`` bool: predictions allowed to match (no label, or the queried one)."""
    if query_label is None or pred_labels is None:
        return np.ones(n_pred, dtype=bool)
    q = str(query_label).strip().lower()
    return np.array([lab is None or str(lab).strip().lower() == q for lab in pred_labels], dtype=bool)


def grounding_terms(
    pred,
    gt,
    iou_threshold: float = 0.5,
    method: str = "hungarian",
    pred_labels=None,
    query_label: str | None = None,
) -> GroundingTerms:
    """Score one answer.

    Args:
        pred: predicted boxes ``(N, 4)``, xyxy in [0, 1].
        gt: ground-truth boxes ``(M, 4)``, xyxy in [0, 1].
        iou_threshold: a pair counts as matched at IoU >= this.
        method: ``"hungarian"`` or ``"greedy"`` (see :mod:`rewards.matching`).
        pred_labels: optional ``N`` labels; with ``query_label`` set, a prediction whose
            label differs from the queried class (case-insensitive) cannot match.
        query_label: the class the prompt asked for (label-aware matching), or None.
    """
    pred, gt = as_boxes(pred), as_boxes(gt)
    return terms_from_iou(iou_matrix(pred, gt), iou_threshold, method, pred_labels, query_label)


def terms_from_iou(iou: np.ndarray, iou_threshold: float, method: str, pred_labels=None, query_label=None) -> GroundingTerms:
    """:func:`grounding_terms` from a finite ``(N, M)`` IoU matrix (shared by the batch path)."""
    n, m = iou.shape
    if n and query_label is not None and pred_labels is not None:
        if len(pred_labels) != n:
            raise ValueError(f"pred_labels has {len(pred_labels)} entries for {n} boxes")
        iou = iou * label_mask(pred_labels, query_label, n)[:, None]
    p_idx, g_idx = match_iou(iou, iou_threshold, method, finite=True)
    return terms_from_counts(n, m, len(p_idx), float(iou[p_idx, g_idx].sum()))


def terms_from_counts(n: int, m: int, k: int, matched_iou_sum: float) -> GroundingTerms:
    """The terms of an answer with ``n`` predictions, ``m`` ground-truth boxes and ``k``
    matched pairs whose IoUs sum to ``matched_iou_sum``."""
    if n == 0 and m == 0:
        return GroundingTerms(0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0, 0, 0)
    mean_iou = matched_iou_sum / k if k else 0.0
    precision = k / n if n else 0.0
    recall = k / m if m else 0.0
    f1 = 2 * precision * recall / (precision + recall) if k else 0.0
    return GroundingTerms(
        iou_loss=1.0 - mean_iou,
        fp=float(n - k),
        fn=float(m - k),
        precision=precision,
        recall=recall,
        f1=f1,
        mean_iou=mean_iou,
        n_pred=n,
        n_gt=m,
        n_matched=k,
    )
