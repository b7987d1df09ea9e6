"""The bounded dense score of one answer: how well its boxes cover the ground truth, in [0, 1].

The counts cost (``iou_loss``, false positives, false negatives at an IoU threshold) makes an
empty answer ``[]`` cheaper than any wrong box and says nothing about a box that misses by a
little. The dense score fixes both:

- **pair quality** ``q = (1 - w) * IoU + w * (1 + GIoU) / 2`` (``w = giou_weight``): in
  [0, 1], and still ranks boxes that do not overlap by how far off they are (GIoU keeps
  growing as a box moves towards its target, where IoU stays 0);
- **matching without threshold**: the Hungarian assignment (scipy; greedy fallback, as
  :mod:`rewards.matching`) that maximizes the total quality of ``min(N, M)`` pairs;
- **duplicates**: a predicted box whose IoU with an earlier box of the same answer is at
  least ``duplicate_iou`` takes no part in the matching (quality 0) but still counts as a box;
- **normalization**, by default a soft F1: ``score = 2 * sum of matched qualities / (N + M)``.
  A missing box (in ``M``) and an extra box (in ``N``) both cost; a box helps only if its
  quality beats half the answer's score without it. ``norm="max"`` divides by ``max(N, M)``
  instead (Visual-RFT's choice).

On a prompt with boxes (``M > 0``) the empty answer scores 0 and, with ``giou_weight > 0``,
any answer with a box scores more (every pair quality is then positive); on a prompt without
boxes ``[]`` scores 1 and any box 0. Why the soft F1 rather than ``/ max(N, M)``: both give the same learning signal on
the learning benchmark's warm start (``trl-ground-check-signal``, BENCHMARKS.md), but with
``max(N, M)`` extra boxes are free while ``N < M``, so spraying ``M`` guesses pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import as_boxes, giou_matrix, iou_matrix
from .matching import match_iou

__all__ = ["DENSE_NORMS", "DenseScore", "dense_from_matrices", "dense_score", "duplicate_mask", "marginal_contributions", "pair_quality"]

DENSE_NORMS = ("f1", "max")


@dataclass(frozen=True)
class DenseScore:
    """The dense score of one answer.

    Attributes:
        score: in [0, 1] (see the module docstring).
        box_quality: ``(N,)`` the matched pair quality of each predicted box, in answer
            order; 0 for a box left unmatched or flagged as a duplicate.
        duplicate: ``(N,)`` bool, the box repeats an earlier one (IoU >= ``duplicate_iou``).
        match: ``(N,)`` int, the ground-truth box each predicted box is matched to, -1 if none.
        n_gt: ground-truth boxes ``M``.
    """

    score: float
    box_quality: np.ndarray
    duplicate: np.ndarray
    match: np.ndarray
    n_gt: int

    @property
    def n_missing(self) -> int:
        """Ground-truth boxes that no predicted box is matched to."""
        return self.n_gt - int((self.match >= 0).sum())


def pair_quality(iou: np.ndarray, giou: np.ndarray, giou_weight: float) -> np.ndarray:
    """``(1 - giou_weight) * iou + giou_weight * (1 + giou) / 2``, elementwise, in [0, 1]."""
    return (1.0 - giou_weight) * iou + giou_weight * 0.5 * (1.0 + giou)


def duplicate_mask(self_iou: np.ndarray, duplicate_iou: float) -> np.ndarray:
    """``(N,)`` bool from the ``(N, N)`` IoU of an answer's boxes with each other: box ``j``
    is a duplicate when its IoU with an earlier box ``i < j`` is >= ``duplicate_iou``."""
    n = self_iou.shape[0]
    if n < 2:
        return np.zeros(n, dtype=bool)
    earlier = np.tril(self_iou >= duplicate_iou, k=-1)
    return earlier.any(axis=1)


def dense_from_matrices(
    iou: np.ndarray,
    giou: np.ndarray,
    duplicate: np.ndarray,
    giou_weight: float,
    method: str = "hungarian",
    allowed: np.ndarray | None = None,
    norm: str = "f1",
) -> DenseScore:
    """:class:`DenseScore` of one answer from its precomputed matrices (the batch path).

    Args:
        iou: ``(N, M)`` IoU of the predicted with the ground-truth boxes.
        giou: ``(N, M)`` GIoU of the same pairs.
        duplicate: ``(N,)`` bool (:func:`duplicate_mask`).
        giou_weight: ``w`` of :func:`pair_quality`.
        method: ``"hungarian"`` or ``"greedy"`` assignment.
        allowed: optional ``(N,)`` bool; a box that may not match (label-aware matching)
            gets quality 0.
        norm: ``"f1"`` (``2 * total / (N + M)``) or ``"max"`` (``total / max(N, M)``).
    """
    n, m = iou.shape
    match = np.full(n, -1, dtype=np.int64)
    if m == 0:
        return DenseScore(1.0 if n == 0 else 0.0, np.zeros(n), duplicate, match, 0)
    if n == 0:
        return DenseScore(0.0, np.zeros(0), duplicate, match, m)
    quality = pair_quality(iou, giou, giou_weight)
    usable = ~duplicate if allowed is None else (~duplicate & allowed)
    quality = quality * usable[:, None]
    p_idx, g_idx = match_iou(quality, 0.0, method, finite=True)
    box_quality = np.zeros(n)
    box_quality[p_idx] = quality[p_idx, g_idx]
    match[p_idx] = g_idx
    match[~usable] = -1
    box_quality[~usable] = 0.0
    total = float(box_quality.sum())
    score = 2.0 * total / (n + m) if norm == "f1" else total / max(n, m)
    return DenseScore(score, box_quality, duplicate, match, m)


def dense_score(
    pred,
    gt,
    giou_weight: float = 0.5,
    duplicate_iou: float = 0.7,
    method: str = "hungarian",
    allowed=None,
    norm: str = "f1",
) -> DenseScore:
    """The dense score of one answer.

    Args:
        pred: predicted boxes ``(N, 4)``, xyxy in [0, 1], in answer order.
        gt: ground-truth boxes ``(M, 4)``, xyxy in [0, 1].
        giou_weight: weight of the GIoU shaping in the pair quality, in [0, 1].
        duplicate_iou: IoU with an earlier box from which a box is a duplicate.
        method: ``"hungarian"`` or ``"greedy"``.
        allowed: optional ``(N,)`` bool, boxes allowed to match (label-aware matching).
        norm: ``"f1"`` or ``"max"`` (see the module docstring).
    """
    pred, gt = as_boxes(pred), as_boxes(gt)
    duplicate = duplicate_mask(iou_matrix(pred, pred), duplicate_iou)
    mask = None if allowed is None else np.asarray(allowed, dtype=bool)
    return dense_from_matrices(iou_matrix(pred, gt), giou_matrix(pred, gt), duplicate, giou_weight, method, mask, norm)


def marginal_contributions(dense: DenseScore, norm: str = "f1") -> np.ndarray:
    """``(N,)`` each predicted box's marginal contribution to the answer's score:
    ``Delta_j = score(answer) - score(answer without box j)``, the other boxes' matches held
    fixed (so it is exact when removing box ``j`` changes no other match, e.g. well separated
    boxes, or ``j`` unmatched or a duplicate of a box that stays).

    With ``T`` the total matched quality, ``q_j`` box ``j``'s (:attr:`DenseScore.box_quality`),
    ``N`` boxes and ``M`` ground-truth boxes: ``"f1"``: ``2T / (N + M) - 2(T - q_j) / (N - 1 + M)``,
    positive exactly when ``q_j`` exceeds half the answer's score (a true positive always does),
    negative for an unmatched or duplicate box (``q_j = 0``) whenever ``T > 0``; ``"max"``:
    ``T / max(N, M) - (T - q_j) / max(N - 1, M)`` (an extra box is free while ``N <= M``). On a
    prompt without boxes (``M = 0``) the score is 1 for ``[]`` and 0 otherwise: the only box of
    an answer contributes -1, each of several boxes 0.

    Args:
        dense: the answer's dense score (its ``box_quality`` and ``n_gt``).
        norm: the normalization the score was computed with, ``"f1"`` or ``"max"``.
    """
    if norm not in DENSE_NORMS:
        raise ValueError(f"norm must be one of {DENSE_NORMS}, got {norm!r}")
    q = np.asarray(dense.box_quality, dtype=np.float64)
    n, m = len(q), dense.n_gt
    if n == 0:
        return np.zeros(0)
    if m == 0:
        return np.full(n, -1.0 if n == 1 else 0.0)
    total = q.sum()
    if norm == "f1":
        return 2.0 * total / (n + m) - 2.0 * (total - q) / (n - 1 + m)
    return total / max(n, m) - (total - q) / max(n - 1, m)
