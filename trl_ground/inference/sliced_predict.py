"""Sliced prediction for large, crowded images (SAHI's idea): ask the model about each tile,
map the tiles' boxes back onto the image, and merge what neighbouring tiles both saw.

Each query becomes one query per tile of :func:`trl_ground.data.tiling.tile_grid` (``size`` px
every ``size - overlap`` px, the last tile flush with the edge), plus, with ``with_full``,
the whole image (SAHI's "standard prediction": large objects that no tile holds whole). The
answers' boxes, in each tile's [0, 1], go back to the image's [0, 1]
(:func:`trl_ground.data.tiling.boxes_from_tile`) and are merged class by class with
:func:`trl_ground.data.tiling.merge_boxes` (union of the pieces by default; scores kept: a merged
box has its group's highest). The result is one answer per query, in the format of
:func:`trl_ground.inference.predict.iter_predictions`, so evaluation runs on the original images as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from rewards import to_qwen_answer

from ..data.images import IMAGE_ERRORS, image_size
from ..data.tiling import boxes_from_tile, check_tiling, merge_boxes, tile_grid
from .predict import PredictionItem, iter_predictions

__all__ = ["SliceSettings", "iter_sliced_predictions"]

_PART = "_slice"  # meta key of a tile's query: (query index, window or None)


@dataclass(frozen=True)
class SliceSettings:
    """How a query is sliced and its tiles' boxes merged (:mod:`trl_ground.data.tiling`)."""

    size: int
    overlap: int = 200
    with_full: bool = False
    merge: str = "union"
    metric: str = "ios"
    threshold: float = 0.5

    def __post_init__(self):
        check_tiling(self.size, self.overlap)
        # the merge's own checks, on nothing
        merge_boxes(np.zeros((0, 4)), [], [], threshold=self.threshold, method=self.merge, metric=self.metric)


def _parts(index: int, item: PredictionItem, settings: SliceSettings) -> list[PredictionItem]:
    """The tile queries of one query (and the whole image's with ``with_full``)."""
    windows = tile_grid(*image_size(item.image_path), settings.size, settings.overlap)
    parts = [replace(item, meta={**item.meta, _PART: (index, None)})] if settings.with_full or len(windows) == 1 else []
    if len(windows) > 1:
        parts += [replace(item, crop=tuple(int(v) for v in w), meta={**item.meta, _PART: (index, tuple(int(v) for v in w))}) for w in windows]
    return parts


def _merged(item: PredictionItem, answers: list[dict], settings: SliceSettings) -> dict:
    """One answer for ``item`` from its parts' ``answers`` (boxes mapped back and merged)."""
    size = image_size(item.image_path)
    boxes, scores, labels, sources = [], [], [], []
    for source, answer in enumerate(answers):
        window = answer[_PART][1]
        part = np.asarray(answer["boxes"], dtype=np.float64).reshape(-1, 4)
        boxes.append(part if window is None else boxes_from_tile(part, size, window))
        scores += answer["scores"]
        labels += [label or item.cls for label in answer["labels"]]
        sources += [source] * len(part)
    merged, merged_scores, merged_labels = merge_boxes(
        np.concatenate(boxes), scores, labels, sources, settings.threshold, settings.merge, settings.metric
    )
    merged = np.clip(merged, 0.0, 1.0)
    width, height = size
    return {
        **item.meta,
        "image_path": item.image_path,
        "width": width,
        "height": height,
        "class": item.cls,
        "query": item.query,
        "answer": to_qwen_answer(merged, item.cls),
        "valid_json": all(a["valid_json"] for a in answers),
        "truncated": any(a["truncated"] for a in answers),
        "num_tokens": sum(a["num_tokens"] for a in answers),
        "boxes": np.round(merged, 6).tolist(),
        "boxes_px": np.round(merged * [width, height, width, height], 2).tolist(),
        "labels": merged_labels,
        "scores": np.round(merged_scores, 6).tolist(),
        "tiles": [
            {"window": None if a[_PART][1] is None else list(a[_PART][1]), "answer": a["answer"], "boxes": len(a["boxes"]),
             "truncated": a["truncated"]}
            for a in answers
        ],
    }


def iter_sliced_predictions(model, processor, items: list[PredictionItem], settings: SliceSettings, **predict_options) -> Iterator[dict]:
    """One answer per item, as :func:`trl_ground.inference.predict.iter_predictions` yields them (same
    ``predict_options``), each asked tile by tile and merged (see the module docstring); the
    answer also lists its ``tiles`` (window, answer, boxes). An image that cannot be read
    yields one ``{"error": ...}`` entry."""
    parts, expected = [], {}
    for index, item in enumerate(items):
        try:
            item_parts = _parts(index, item, settings)
        except IMAGE_ERRORS as err:
            yield {**item.meta, "image_path": item.image_path, "class": item.cls, "error": f"{type(err).__name__}: {err}"}
            continue
        expected[index] = len(item_parts)
        parts += item_parts
    received: dict[int, list[dict]] = {}
    for answer in iter_predictions(model, processor, parts, **predict_options):
        index = answer[_PART][0]
        if index not in expected:
            continue  # its image already failed
        if "error" in answer:
            del expected[index]
            received.pop(index, None)
            yield {k: v for k, v in answer.items() if k != _PART}
            continue
        received.setdefault(index, []).append(answer)
        if len(received[index]) == expected[index]:
            del expected[index]
            yield _merged(items[index], received.pop(index), settings)
