"""One-to-one matching of predicted to ground-truth boxes.

Both matchers take ``pred (N, 4)`` and ``gt (M, 4)`` (xyxy, same space) and return
``(pred_idx, gt_idx)``: two int64 arrays of equal length ``K``, each pair with IoU at or
above ``iou_threshold``, no index used twice, ordered by ``pred_idx``.

- :func:`hungarian_match` (scipy ``linear_sum_assignment``) returns the assignment with the
  most pairs at or above the threshold and, among those, the largest total IoU.
- :func:`greedy_match` is the reference script's rule: highest IoU first, each box used once, stop
  below the threshold. It can find fewer pairs (it may take a pair that blocks two others).

If scipy is missing or the IoU matrix is not finite, the Hungarian matcher falls back to
greedy and warns once.
"""

from __future__ import annotations

import warnings

import numpy as np

from .boxes import as_boxes, iou_matrix

try:  # scipy is a hard dependency of the package, but the fallback keeps scoring alive.
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    linear_sum_assignment = None

__all__ = ["MATCH_METHODS", "check_matching", "greedy_match", "hungarian_match", "match_iou"]

MATCH_METHODS = ("hungarian", "greedy")
_EMPTY = np.zeros(0, dtype=np.int64)
_warned_fallback = False


def check_matching(iou_threshold: float, method: str = "hungarian") -> None:
    """Raise ``ValueError`` unless ``iou_threshold`` lies in [0, 1] and ``method`` is one of
    :data:`MATCH_METHODS` (the one home of these checks)."""
    if method not in MATCH_METHODS:
        raise ValueError(f"method must be one of {MATCH_METHODS}, got {method!r}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")


def _warn_fallback_once(reason: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(f"hungarian_match falls back to greedy matching: {reason}", RuntimeWarning, stacklevel=3)


def _greedy_from_iou(iou: np.ndarray, iou_threshold: float):
    rows, cols = np.nonzero(iou >= iou_threshold)
    if len(rows) == 0:
        return _EMPTY, _EMPTY
    # Highest IoU first; ties broken by (pred index, gt index) so the result is deterministic.
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_p, used_g, pairs = set(), set(), []
    for k in order:
        i, j = int(rows[k]), int(cols[k])
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            pairs.append((i, j))
    pairs.sort()
    p, g = zip(*pairs)
    return np.asarray(p, dtype=np.int64), np.asarray(g, dtype=np.int64)


def _hungarian_from_iou(iou: np.ndarray, iou_threshold: float, finite: bool = False):
    if linear_sum_assignment is None:
        _warn_fallback_once("scipy is not installed")
        return _greedy_from_iou(iou, iou_threshold)
    if not finite and not np.isfinite(iou).all():
        _warn_fallback_once("the IoU matrix is not finite")
        return _greedy_from_iou(np.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0), iou_threshold)
    # Lexicographic objective (count first, then total IoU) as one weight: every eligible
    # pair is worth more than the largest possible total IoU, min(N, M); others are 0.
    bonus = float(min(iou.shape)) + 1.0
    weight = (iou + bonus) * (iou >= iou_threshold)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    keep = weight[rows, cols] > 0.0
    return rows[keep].astype(np.int64, copy=False), cols[keep].astype(np.int64, copy=False)


def match_iou(iou: np.ndarray, iou_threshold: float = 0.5, method: str = "hungarian", finite: bool = False):
    """Match from a precomputed ``(N, M)`` IoU matrix (used to avoid computing it twice).

    ``finite=True`` promises the matrix is finite (as :func:`rewards.iou_matrix` guarantees)
    and skips that check on the hot path.
    """
    check_matching(iou_threshold, method)
    if iou.shape[0] == 0 or iou.shape[1] == 0:
        return _EMPTY, _EMPTY
    if method == "greedy":
        return _greedy_from_iou(iou, iou_threshold)
    return _hungarian_from_iou(iou, iou_threshold, finite)


def _checked(pred, gt, iou_threshold):
    check_matching(iou_threshold)
    return iou_matrix(as_boxes(pred), as_boxes(gt))


def hungarian_match(pred, gt, iou_threshold: float = 0.5):
    """Optimal one-to-one matching: most pairs with IoU >= threshold, then largest total IoU.

    Args:
        pred: ``(N, 4)`` xyxy. gt: ``(M, 4)`` xyxy. iou_threshold: in [0, 1].
    Returns:
        ``(pred_idx, gt_idx)``, int64 arrays of length ``K <= min(N, M)``.
    """
    return match_iou(_checked(pred, gt, iou_threshold), iou_threshold, "hungarian", finite=True)


def greedy_match(pred, gt, iou_threshold: float = 0.5):
    """Greedy matching (the reference script's rule); same signature and return as :func:`hungarian_match`."""
    return match_iou(_checked(pred, gt, iou_threshold), iou_threshold, "greedy")
