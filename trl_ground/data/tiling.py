"""The maths of tiling large images: the tile grid, boxes into a tile and back, and the merge
of per-tile predictions. numpy only (IoU from :mod:`rewards.boxes`); no file is read here.

Coordinate spaces (all boxes ``xyxy``):

- **image**: ``[0, 1]`` of the whole image's width and height (the project's convention);
- **window**: a tile's pixel rectangle ``[x0, y0, x1, y1]`` in the whole image (ints,
  ``x1`` / ``y1`` exclusive, as PIL's ``Image.crop`` takes it);
- **tile**: ``[0, 1]`` of one tile's width and height.

The grid follows DOTA_devkit's ``ImgSplit``: tiles of ``size`` pixels every
``size - overlap`` pixels, the last tile of a row (column) moved back to end flush with the
image's edge, so every tile is a full ``size`` square whenever the image is at least that
large (a smaller side gives one tile of the image's own length; nothing is padded). A box is
kept in a tile when the part of it inside the tile holds at least ``min_visible`` of its
area (DOTA keeps 0.7 of a rotated box; 0.5 by default here: an object half inside a tile is
still worth naming there), clipped to the tile.

The merge (:func:`merge_boxes`) follows SAHI's postprocessing: greedy, highest score first,
class by class; a box absorbs the lower-scored boxes it matches (IoS or IoU above a
threshold) and either stays as it is (``nms``) or becomes the enclosing box of its group
(``union``, SAHI's non-maximum merging: an object cut by a tile border is seen in two halves,
whose union is the whole object). Boxes from the same tile never absorb each other: the
model, seeing that tile, said they are different objects.
"""

from __future__ import annotations

import numpy as np

from rewards.boxes import as_boxes, iou_matrix

__all__ = [
    "MERGE_METHODS",
    "MATCH_METRICS",
    "boxes_from_tile",
    "boxes_to_tile",
    "check_tiling",
    "merge_boxes",
    "tile_grid",
]

MERGE_METHODS = ("union", "nms")
MATCH_METRICS = ("ios", "iou")


def check_tiling(size: int, overlap: int, min_visible: float = 0.5) -> None:
    """Raise ``ValueError`` (one line) unless ``size > overlap >= 0`` and ``0 < min_visible <= 1``."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"the tile size must be a whole number of pixels >= 2, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"the tile overlap must be a whole number of pixels >= 0, got {overlap!r}")
    if overlap >= size:
        raise ValueError(f"the tile overlap ({overlap} px) must be smaller than the tile size ({size} px)")
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"the fraction of a box a tile must hold to keep it must lie in (0, 1], got {min_visible}")


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Tile starts along one side: every ``stride``, the last flush with the edge."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


def tile_grid(width: int, height: int, size: int, overlap: int) -> np.ndarray:
    """The tiles of a ``width`` x ``height`` image (see the module docstring).

    Returns:
        ``ndarray[T, 4]`` int64 windows ``[x0, y0, x1, y1]`` in pixels, row by row (top to
        bottom, left to right); one window, the whole image, when it fits in one tile.
    """
    check_tiling(size, overlap)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    stride = size - overlap
    xs, ys = _starts(width, size, stride), _starts(height, size, stride)
    return np.array([[x, y, min(x + size, width), min(y + size, height)] for y in ys for x in xs], dtype=np.int64)


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def boxes_to_tile(boxes, image_size: tuple[int, int], window, min_visible: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The boxes a tile keeps, clipped to it and normalized to it.

    Args:
        boxes: ``(N, 4)`` in image space.
        image_size: ``(width, height)`` of the whole image in pixels.
        window: ``(4,)`` the tile's window in pixels.
        min_visible: keep a box when its clipped part has at least this fraction of its area.
    Returns:
        ``(tile_boxes, kept)``: ``(K, 4)`` in tile space and ``(K,)`` the indices into
        ``boxes`` of the kept ones, in their order.
    """
    b = as_boxes(boxes)
    width, height = image_size
    x0, y0, x1, y1 = (float(v) for v in window)
    px = b * np.array([width, height, width, height], dtype=np.float64)
    clipped = np.stack([np.clip(px[:, 0], x0, x1), np.clip(px[:, 1], y0, y1), np.clip(px[:, 2], x0, x1), np.clip(px[:, 3], y0, y1)], axis=1)
    area = _area(px)
    with np.errstate(divide="ignore", invalid="ignore"):
        visible = np.where(area > 0, _area(clipped) / area, 0.0)
    kept = np.flatnonzero((visible >= min_visible - 1e-9) & (_area(clipped) > 0))
    tile = (clipped[kept] - [x0, y0, x0, y0]) / np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    return np.clip(tile, 0.0, 1.0), kept


def boxes_from_tile(boxes, image_size: tuple[int, int], window) -> np.ndarray:
    """``(N, 4)`` boxes in a tile's space -> ``(N, 4)`` in the whole image's space.

    Args:
        boxes: ``(N, 4)`` in tile space. image_size: ``(width, height)`` of the whole image.
        window: ``(4,)`` the tile's window in pixels.
    """
    b = as_boxes(boxes)
    width, height = image_size
    x0, y0, x1, y1 = (float(v) for v in window)
    px = b * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0]) + np.array([x0, y0, x0, y0])
    return px / np.array([width, height, width, height], dtype=np.float64)


def _match_matrix(b: np.ndarray, metric: str) -> np.ndarray:
    """``(N, N)`` IoU, or IoS (intersection over the smaller area), of every pair."""
    iou = iou_matrix(b, b)
    if metric == "iou":
        return iou
    area = _area(b)
    total = area[:, None] + area[None, :]
    inter = iou * total / (1.0 + iou)  # IoU = I / (A + B - I)
    smaller = np.minimum(area[:, None], area[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(smaller > 0, inter / smaller, 0.0)


def merge_boxes(
    boxes,
    scores,
    labels,
    sources=None,
    threshold: float = 0.5,
    method: str = "union",
    metric: str = "ios",
) -> tuple[np.ndarray, np.ndarray, list]:
    """Merge the boxes of overlapping tiles (see the module docstring), class by class.

    Args:
        boxes: ``(N, 4)`` in image space. scores: ``(N,)`` confidences. labels: ``N`` classes.
        sources: ``(N,)`` which tile (or the full image) each box came from; boxes of the
            same source never merge. None: every box is its own source.
        threshold: a lower-scored box whose IoS (or IoU) with the kept box reaches this is absorbed.
        method: ``"union"`` (the kept box grows to enclose what it absorbs) or ``"nms"``.
        metric: ``"ios"`` (intersection over the smaller box; finds a half-object inside a
            whole one) or ``"iou"``.
    Returns:
        ``(boxes (M, 4) image space, scores (M,), labels)``, highest score first; a merged box
        keeps the highest score of its group.
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"merge method must be one of {MERGE_METHODS}, got {method!r}")
    if metric not in MATCH_METRICS:
        raise ValueError(f"match metric must be one of {MATCH_METRICS}, got {metric!r}")
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = list(labels)
    if not len(b) == len(s) == len(labels):
        raise ValueError(f"boxes, scores and labels differ in length: {len(b)}, {len(s)}, {len(labels)}")
    src = np.arange(len(b)) if sources is None else np.asarray(sources).reshape(-1)
    out_boxes, out_scores, out_labels = [], [], []
    for label in sorted(set(labels), key=str):
        idx = np.array([i for i, lab in enumerate(labels) if lab == label])
        idx = idx[np.argsort(-s[idx], kind="stable")]
        match = _match_matrix(b[idx], metric)
        free = np.ones(len(idx), dtype=bool)
        for i in range(len(idx)):
            if not free[i]:
                continue
            group = free & (match[i] >= threshold) & (src[idx] != src[idx[i]])
            group[i] = True
            free &= ~group
            members = b[idx[group]]
            box = b[idx[i]] if method == "nms" else np.concatenate([members[:, :2].min(axis=0), members[:, 2:].max(axis=0)])
            out_boxes.append(box)
            out_scores.append(s[idx[i]])
            out_labels.append(label)
    order = np.argsort(-np.asarray(out_scores), kind="stable") if out_scores else np.zeros(0, dtype=int)
    return as_boxes(out_boxes)[order], np.asarray(out_scores, dtype=np.float64)[order], [out_labels[i] for i in order]
