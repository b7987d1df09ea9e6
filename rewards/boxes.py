"""Box geometry: IoU and GIoU matrices, validation and clipping.

Every box here is ``xyxy``: ``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2`` for a
well-formed box. The functions accept any consistent coordinate space (the project uses
[0, 1] of the image's width and height) and never produce NaN: a degenerate box (zero
area), a flipped box (``x2 < x1`` or ``y2 < y1``) or a non-finite coordinate counts as a
box of area 0, whose IoU with anything is 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_boxes", "batched_giou", "batched_iou", "clip_boxes", "giou_matrix", "iou_matrix", "valid_box_mask"]


def as_boxes(boxes) -> np.ndarray:
    """Return ``boxes`` as a float64 array of shape ``(N, 4)``.

    Accepts anything array-like of shape ``(N, 4)`` or ``(4,)`` (one box), and empty input
    (``[]``, ``None``) as ``(0, 4)``. Raises ``ValueError`` for any other shape.
    """
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float64)
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        return arr.reshape(1, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    return arr


def valid_box_mask(boxes) -> np.ndarray:
    """``(N,)`` bool: the box has finite coordinates and positive width and height."""
    b = as_boxes(boxes)
    finite = np.isfinite(b).all(axis=1)
    with np.errstate(invalid="ignore"):
        return finite & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])


def clip_boxes(boxes, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Clip every coordinate of ``boxes (N, 4)`` into ``[low, high]`` (a new array)."""
    return np.clip(as_boxes(boxes), low, high)


def finite_or_empty(boxes: np.ndarray) -> np.ndarray:
    """A box with any non-finite coordinate becomes the empty box [0, 0, 0, 0]."""
    finite = np.isfinite(boxes).all(axis=1)
    return boxes if finite.all() else np.where(finite[:, None], boxes, 0.0)


def _overlap(a: np.ndarray, b: np.ndarray):
    """Shared core of IoU and GIoU, on sanitized ``a (..., N, 4)`` and ``b (..., M, 4)``.

    Returns ``(inter, union)``, each ``(..., N, M)``. Works on coordinate columns, which is
    several times faster than ``(N, M, 2)`` intermediates for the small matrices of one
    answer. Flipped boxes have area 0 and intersect nothing.
    """
    ax1, ay1, ax2, ay2 = a[..., 0:1], a[..., 1:2], a[..., 2:3], a[..., 3:4]
    bx1, by1, bx2, by2 = b[..., None, :, 0], b[..., None, :, 1], b[..., None, :, 2], b[..., None, :, 3]
    iw = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    ih = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(ax2 - ax1, 0.0) * np.maximum(ay2 - ay1, 0.0)
    area_b = np.maximum(bx2 - bx1, 0.0) * np.maximum(by2 - by1, 0.0)
    return inter, area_a + area_b - inter


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0 (callers guarantee ``num = 0`` there)."""
    return num / np.where(den > 0.0, den, 1.0)


def _prepare(a, b):
    a, b = as_boxes(a), as_boxes(b)
    return finite_or_empty(a), finite_or_empty(b)


def batched_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of padded batches: ``a (B, N, 4)``, ``b (B, M, 4)`` finite -> ``(B, N, M)``.

    ``inter <= union`` holds exactly; the ``min`` guards the last ulp. Padding rows should be ``[0, 0, 0, 0]`` (IoU 0 with everything).
    """
    inter, union = _overlap(a, b)
    return np.minimum(_ratio(inter, union), 1.0)


def iou_matrix(a, b) -> np.ndarray:
    """Pairwise intersection over union.

    Args:
        a: boxes ``(N, 4)`` xyxy. b: boxes ``(M, 4)`` xyxy, same coordinate space.
    Returns:
        ``(N, M)`` float64 in [0, 1]; ``(0, M)`` / ``(N, 0)`` for empty inputs. Pairs whose
        union is 0 (both boxes degenerate) have IoU 0.
    """
    a, b = _prepare(a, b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return batched_iou(a, b)


def batched_giou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Generalized IoU of padded batches: ``a (B, N, 4)``, ``b (B, M, 4)`` finite -> ``(B, N, M)``
    in [-1, 1] (see :func:`giou_matrix`; padding rows ``[0, 0, 0, 0]`` give 0 with anything
    of area 0 and values < 0 with real boxes, so callers mask the padding)."""
    inter, union = _overlap(a, b)
    enc_w = np.maximum(np.maximum(a[..., 2:3], b[..., None, :, 2]) - np.minimum(a[..., 0:1], b[..., None, :, 0]), 0.0)
    enc_h = np.maximum(np.maximum(a[..., 3:4], b[..., None, :, 3]) - np.minimum(a[..., 1:2], b[..., None, :, 1]), 0.0)
    enclosing = enc_w * enc_h
    giou = _ratio(inter, union) - _ratio(enclosing - union, enclosing)
    return np.clip(giou, -1.0, 1.0)


def giou_matrix(a, b) -> np.ndarray:
    """Pairwise generalized IoU: ``IoU - (C - U) / C`` with ``C`` the enclosing box's area.

    Shapes as :func:`iou_matrix`; values in [-1, 1]. When the enclosing box has area 0
    (both boxes degenerate) the GIoU equals the IoU, 0.
    """
    a, b = _prepare(a, b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return batched_giou(a, b)
