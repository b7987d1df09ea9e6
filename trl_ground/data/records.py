"""Load and validate the grounding JSON (the reference script's format) before anything trains.

A file is a JSON list of records::

    {"image": "a.png", "image_path": "sub/a.png", "caption": "...",
     "objects": [{"class": "ship", "bbox_aabb": [x1, y1, x2, y2],
                  "obj_id": 3, "is_unique": true, "obj_position": "top left", "obj_size": "small"}]}

``bbox_aabb`` is xyxy normalized to [0, 1]. Images are found under ``img_root`` via
``image_path`` if given, else ``image``. Every image is opened and decoded cheaply
(:func:`trl_ground.data.images.check_image`: unreadable, truncated, corrupt and over-the-pixel-
limit images are bad records) unless ``check_images=False``. Every problem raises a
``ValueError`` that names the file, the record index and the field; with
``on_bad_record="skip"`` bad records are skipped instead and the reasons are returned (and
logged).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rewards.scoring import GT_TOLERANCE as BOX_TOLERANCE

from .images import check_image
from .json_files import read_json

__all__ = ["BOX_TOLERANCE", "GroundingObject", "GroundingRecord", "load_records", "validate_records"]

logger = logging.getLogger(__name__)

# Coordinates up to BOX_TOLERANCE outside [0, 1] are rounding noise from annotation tools:
# clipped (the value the scorer accepts in a ground truth, defined once, in rewards/).


@dataclass(frozen=True)
class GroundingObject:
    """One annotated object. ``box`` is ``(4,)`` xyxy in [0, 1] (clipped)."""

    cls: str
    box: tuple
    obj_id: object = None
    is_unique: bool | None = None
    position: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class GroundingRecord:
    """One validated image record; ``index`` is its position in the JSON file.

    ``crop``: for a tile of the image (:mod:`trl_ground.data.tiled_data`), its pixel window
    ``(x0, y0, x1, y1)`` in ``image_path``, and the objects' boxes are in the tile's [0, 1];
    None for the whole image."""

    index: int
    image: str
    image_path: Path
    objects: tuple = field(default_factory=tuple)
    caption: str | None = None
    crop: tuple | None = None

    def boxes_of(self, cls: str) -> np.ndarray:
        """Boxes ``(N, 4)`` of class ``cls``, xyxy in [0, 1], top-to-bottom then left-to-right."""
        boxes = [o.box for o in self.objects if o.cls == cls]
        return sort_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))

    @property
    def classes(self) -> list[str]:
        """Classes present, most common first (ties: alphabetical)."""
        counts: dict[str, int] = {}
        for o in self.objects:
            counts[o.cls] = counts.get(o.cls, 0) + 1
        return sorted(counts, key=lambda c: (-counts[c], c))


def sort_boxes(boxes: np.ndarray) -> np.ndarray:
    """Deterministic reading order: by top edge, then left edge (then the rest)."""
    if len(boxes) < 2:
        return boxes
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 0], boxes[:, 1]))
    return boxes[order]


class _BadRecord(ValueError):
    pass


def _where(path: Path, index: int, fld: str) -> str:
    return f"{path}: record {index}, field '{fld}'"


def _check_box(value, path: Path, index: int, fld: str) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise _BadRecord(f"{_where(path, index, fld)}: expected 4 numbers [x1, y1, x2, y2], got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value):
        raise _BadRecord(f"{_where(path, index, fld)}: coordinates must be finite numbers, got {value!r}")
    if min(value) < -BOX_TOLERANCE or max(value) > 1 + BOX_TOLERANCE:
        raise _BadRecord(
            f"{_where(path, index, fld)}: coordinates must be normalized to [0, 1] (tolerance {BOX_TOLERANCE}), got {value!r}"
        )
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in value)
    if x2 <= x1 or y2 <= y1:
        raise _BadRecord(f"{_where(path, index, fld)}: needs x2 > x1 and y2 > y1, got {value!r}")
    return (x1, y1, x2, y2)


def _resolve_image(rec: dict, root: Path, path: Path, index: int, check_exists: bool, check_contents: bool) -> tuple[str, Path]:
    if "image" not in rec:
        raise _BadRecord(f"{_where(path, index, 'image')}: missing")
    image = rec["image"]
    if not isinstance(image, str) or not image:
        raise _BadRecord(f"{_where(path, index, 'image')}: must be a non-empty file name, got {image!r}")
    fld = "image_path" if rec.get("image_path") else "image"
    rel = rec[fld]
    if not isinstance(rel, str):
        raise _BadRecord(f"{_where(path, index, fld)}: must be a string, got {rel!r}")
    full = (root / rel).resolve()
    if not full.is_relative_to(root):
        raise _BadRecord(f"{_where(path, index, fld)}: {rel!r} resolves outside the image root {root}")
    if check_exists and not full.is_file():
        raise _BadRecord(f"{_where(path, index, fld)}: image file not found: {full}")
    if check_exists and check_contents:
        try:
            check_image(full)
        except ValueError as err:
            raise _BadRecord(f"{_where(path, index, fld)}: {full}: {err}") from None
    return image, full


def _parse_record(rec, root: Path, path: Path, index: int, check_exists: bool, check_contents: bool) -> GroundingRecord:
    if not isinstance(rec, dict):
        raise _BadRecord(f"{path}: record {index}: expected a JSON object, got {type(rec).__name__}")
    objects = rec.get("objects", [])
    if not isinstance(objects, list):
        raise _BadRecord(f"{_where(path, index, 'objects')}: must be a list, got {type(objects).__name__}")
    parsed = []
    for j, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise _BadRecord(f"{_where(path, index, f'objects[{j}]')}: expected a JSON object")
        cls = obj.get("class")
        if not isinstance(cls, str) or not cls.strip():
            raise _BadRecord(f"{_where(path, index, f'objects[{j}].class')}: must be a non-empty string, got {cls!r}")
        box = _check_box(obj.get("bbox_aabb"), path, index, f"objects[{j}].bbox_aabb")
        unique = obj.get("is_unique")
        parsed.append(
            GroundingObject(
                cls=cls.strip(),
                box=box,
                obj_id=obj.get("obj_id"),
                is_unique=bool(unique) if unique is not None else None,
                position=obj.get("obj_position") if isinstance(obj.get("obj_position"), str) else None,
                size=obj.get("obj_size") if isinstance(obj.get("obj_size"), str) else None,
            )
        )
    image, full = _resolve_image(rec, root, path, index, check_exists, check_contents)  # last: the slow part
    caption = rec.get("caption")
    return GroundingRecord(index, image, full, tuple(parsed), caption if isinstance(caption, str) else None)


def _read_json_list(path: Path) -> list:
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got a {type(data).__name__}")
    return data


def _check_arguments(img_root, on_bad_record: str) -> Path:
    if on_bad_record not in ("error", "skip"):
        raise ValueError(f"on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    root = Path(img_root).resolve()
    if not root.is_dir():
        raise ValueError(f"image root {img_root} is not a directory")
    return root


# Opening this many images or more takes seconds: a progress bar shows it.
PROGRESS_MIN_IMAGES = 500


def _validate(data: list, root: Path, source: Path, on_bad_record: str, check_images: bool, require_images: bool):
    records, skipped = [], []
    items = enumerate(data)
    if check_images and require_images and len(data) >= PROGRESS_MIN_IMAGES:
        from tqdm.auto import tqdm

        items = tqdm(items, total=len(data), desc=f"checking the images of {source.name}", unit="image", leave=False)
    for index, rec in items:
        try:
            records.append(_parse_record(rec, root, source, index, require_images, check_images))
        except _BadRecord as err:
            if on_bad_record == "error":
                raise ValueError(str(err)) from None
            skipped.append(str(err))
    if skipped:
        logger.warning("skipped %d bad record(s) of %s; first: %s", len(skipped), source, "; ".join(skipped[:3]))
    return records, skipped


def load_records(
    json_path, img_root, on_bad_record: str = "error", check_images: bool = True, require_images: bool = True
) -> tuple[list[GroundingRecord], list[str]]:
    """Validate every record of ``json_path``.

    Args:
        json_path: the JSON list of records.
        img_root: directory that image paths are relative to (no path may leave it).
        on_bad_record: ``"error"`` (raise at the first bad record) or ``"skip"``.
        check_images: open and decode every image (:func:`trl_ground.data.images.check_image`);
            False for large trusted sets (only existence is checked then).
        require_images: require every image file to exist; False reads only the JSON
            (evaluation: the boxes are what matters), and then no image is opened.
    Returns:
        ``(records, skipped)``: the valid records in file order and, with ``"skip"``, one
        reason per skipped record.
    Raises:
        ValueError naming the file, record index and field.
    """
    root = _check_arguments(img_root, on_bad_record)
    path = Path(json_path)
    return _validate(_read_json_list(path), root, path, on_bad_record, check_images, require_images)


def validate_records(
    data: list, img_root, source: str, on_bad_record: str = "error", check_images: bool = True, require_images: bool = True
) -> tuple[list[GroundingRecord], list[str]]:
    """:func:`load_records` on records already in memory (e.g. converted from COCO / YOLO);
    ``source`` (what they came from) is named in every error message."""
    root = _check_arguments(img_root, on_bad_record)
    return _validate(data, root, Path(source), on_bad_record, check_images, require_images)
