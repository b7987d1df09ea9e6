"""Read and check a predictions file before it is scored.

Two formats are accepted:

- ``predict_bbox.py``'s outputs: a JSON list with one entry per answered query::

      {"image": "a.png", "class": "ship", "boxes": [[x1, y1, x2, y2], ...], "scores": [...],
       "mode": "primary", "query": "...", "valid_json": true, "truncated": false, "num_tokens": 31}

  ``image``, ``class`` and ``boxes`` are required; ``boxes`` are xyxy and expected in [0, 1];
  ``scores`` (one per box, default 1.0), ``mode`` (``primary`` / ``class`` / ``referring`` /
  ``negative``), ``query`` (needed for referring queries), ``is_unique``, ``valid_json``,
  ``truncated`` and ``num_tokens`` are optional.
- the training (reference script's) format, a list of records with ``objects``: a table of every box of
  every class of each listed image (score 1), so that a file can be scored against itself.

A malformed file or entry raises ``ValueError`` naming the file, the entry index and the
field. Coordinates outside [0, 1] are not an error here (a model can write them): they are
flagged per entry (:attr:`Prediction.out_of_range`) and reported by the evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.json_files import read_json
from ..data.records import BOX_TOLERANCE

__all__ = ["ENTRY_MODES", "Prediction", "PredictionFile", "read_predictions"]

# The ``mode`` values ``predict_bbox.py`` writes (those of ``trl_ground.data.dataset.build_examples``).
ENTRY_MODES = ("primary", "class", "referring", "negative")


@dataclass
class Prediction:
    """One entry of a predictions file.

    Attributes:
        index: the entry's position in the file (the record's, for the training format).
        image: the image name (the ground truth's ``image``).
        cls: the queried class.
        boxes: ``(N, 4)`` float, xyxy as written (expected in [0, 1]).
        scores: ``(N,)`` confidences.
        mode: one of :data:`ENTRY_MODES`, or None when the file does not say.
        query: the prompt's query text (identifies referring queries), or None.
        is_unique: the referring object's ``is_unique`` flag, or None.
        valid_json: whether the answer parsed as JSON.
        truncated: whether the answer hit the token limit.
        num_tokens: tokens generated for the answer, or None when not recorded.
    """

    index: int
    image: str
    cls: str
    boxes: np.ndarray
    scores: np.ndarray
    mode: str | None = None
    query: str | None = None
    is_unique: bool | None = None
    valid_json: bool = True
    truncated: bool = False
    num_tokens: int | None = None

    @property
    def out_of_range(self) -> bool:
        """Any coordinate outside [0, 1] (beyond the data's rounding tolerance)."""
        return bool(len(self.boxes)) and bool((self.boxes.min() < -BOX_TOLERANCE) or (self.boxes.max() > 1 + BOX_TOLERANCE))


@dataclass
class PredictionFile:
    """A checked predictions file: its entries in file order, whether it is in the training
    format, and (training format) the images it lists: a complete statement about each."""

    path: Path
    entries: list[Prediction]
    training_format: bool
    images: frozenset


def _where(path, index: int, fld: str) -> str:
    return f"{path}: entry {index}, field '{fld}'"


def _boxes(value, path, index: int, fld: str) -> np.ndarray:
    if not isinstance(value, list):
        raise ValueError(f"{_where(path, index, fld)}: expected a list of [x1, y1, x2, y2], got {type(value).__name__}")
    for j, box in enumerate(value):
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise ValueError(f"{_where(path, index, f'{fld}[{j}]')}: expected 4 numbers [x1, y1, x2, y2], got {box!r}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in box):
            raise ValueError(f"{_where(path, index, f'{fld}[{j}]')}: coordinates must be finite numbers, got {box!r}")
    return np.asarray(value, dtype=np.float64).reshape(-1, 4)


def _scores(value, n: int, path, index: int) -> np.ndarray:
    if value is None:
        return np.ones(n)
    if (
        not isinstance(value, list)
        or len(value) != n
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)
    ):
        raise ValueError(f"{_where(path, index, 'scores')}: expected {n} finite numbers (one per box), got {value!r}")
    return np.asarray(value, dtype=np.float64)


def _text(entry: dict, key: str, path, index: int, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{_where(path, index, key)}: {'missing' if value is None else f'must be a non-empty string, got {value!r}'}")
    return value


def _entry(entry, path, index: int) -> Prediction:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: entry {index}: expected a JSON object, got {type(entry).__name__}")
    mode = entry.get("mode")
    if mode is not None and mode not in ENTRY_MODES:
        raise ValueError(f"{_where(path, index, 'mode')}: must be one of {ENTRY_MODES}, got {mode!r}")
    if "boxes" not in entry:
        raise ValueError(f"{_where(path, index, 'boxes')}: missing (an answer without boxes is written as [])")
    boxes = _boxes(entry["boxes"], path, index, "boxes")
    tokens = entry.get("num_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
        raise ValueError(f"{_where(path, index, 'num_tokens')}: must be a non-negative integer, got {tokens!r}")
    query = _text(entry, "query", path, index, required=mode == "referring")
    unique = entry.get("is_unique")
    return Prediction(
        index=index,
        image=_text(entry, "image", path, index),
        cls=_text(entry, "class", path, index),
        boxes=boxes,
        scores=_scores(entry.get("scores"), len(boxes), path, index),
        mode=mode,
        query=query,
        is_unique=None if unique is None else bool(unique),
        valid_json=bool(entry.get("valid_json", True)),
        truncated=bool(entry.get("truncated", False)),
        num_tokens=tokens,
    )


def _training_format_entries(data: list, path) -> tuple[list[Prediction], frozenset]:
    """One entry per (record, class) with every box of that class, score 1."""
    entries, images = [], set()
    for index, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: record {index}: expected a JSON object, got {type(rec).__name__}")
        image = _text(rec, "image", path, index)
        objects = rec.get("objects", [])
        if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
            raise ValueError(f"{_where(path, index, 'objects')}: must be a list of objects")
        images.add(image)
        by_class: dict[str, list] = {}
        for j, obj in enumerate(objects):
            cls = _text(obj, "class", path, index)
            by_class.setdefault(cls.strip(), []).append(_boxes([obj.get("bbox_aabb")], path, index, f"objects[{j}].bbox_aabb")[0])
        for cls, boxes in by_class.items():
            stacked = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            entries.append(Prediction(index, image, cls, stacked, np.ones(len(stacked))))
    return entries, frozenset(images)


def read_predictions(path) -> PredictionFile:
    """Read and check ``path`` (either format, see the module docstring).

    Raises:
        ValueError naming the file (and the entry and field) when the file is missing, not
        JSON, not a list, or holds a malformed entry. An empty list is returned as such: the
        evaluation decides that it is an error.
    """
    path = Path(path)
    data = read_json(path, "predictions file")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of predictions, got a {type(data).__name__}")
    if data and isinstance(data[0], dict) and "objects" in data[0]:
        entries, images = _training_format_entries(data, path)
        return PredictionFile(path, entries, True, images)
    entries = [_entry(entry, path, i) for i, entry in enumerate(data)]
    return PredictionFile(path, entries, False, frozenset(e.image for e in entries))
