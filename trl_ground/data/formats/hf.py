"""A Hugging Face ``datasets`` detection dataset -> records (and image files).

The dataset has an image column (an ``Image`` feature) and an objects column holding, per
row, a ``bbox`` and a ``category`` per object: either as a dict of lists (``Sequence`` of a
struct, as the Hub's detection datasets) or as a list of dicts. ``category`` is a
``ClassLabel`` id (named by its ``names``) or a plain string.

``bbox_format`` says what ``bbox`` holds (never guessed):

- ``coco`` (default, as the Hub's detection datasets): ``[x, y, w, h]``, top-left corner and size;
- ``xyxy``: ``[x1, y1, x2, y2]``;
- ``yolo``: ``[cx, cy, w, h]``, centre and size, always normalized to [0, 1];

in pixels of the image, or with ``bbox_normalized`` in [0, 1] of it. The images are written,
as their original bytes, under ``img_root`` as ``{split}_{row:06d}.{ext}``. ``obj_id`` is the
object's index in its row. ``dataset`` is a directory written by ``save_to_disk`` (works
offline) or a name for ``datasets.load_dataset``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from .base import BadAnnotation, ConversionSummary, check_size, convert_each, finite_numbers, pixel_box, record, unit_box

__all__ = ["BBOX_FORMATS", "from_hf"]

BBOX_FORMATS = ("coco", "xyxy", "yolo")
_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}


def _load(dataset: str, split: str | None):
    """``(Dataset, split name)`` from a ``save_to_disk`` directory or the Hub."""
    import datasets

    if Path(dataset).exists():
        loaded = datasets.load_from_disk(dataset)
    else:
        try:
            loaded = datasets.load_dataset(dataset, split=split or "train")
        except (FileNotFoundError, ConnectionError) as err:  # a mistyped path, or no network
            raise ValueError(f"{dataset}: not a saved dataset directory, and load_dataset failed: {str(err).splitlines()[0]}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None and len(loaded) == 1:
            split = next(iter(loaded))
        if split not in loaded:
            raise ValueError(f"{dataset}: no split {split!r}; it has {sorted(loaded)} (pass --split)")
        loaded = loaded[split]
    return loaded, split or (loaded.split and str(loaded.split)) or "train"


def _category_names(feature, key: str) -> list[str] | None:
    """The ``ClassLabel`` names of ``objects.<key>``, for either layout of the objects column."""
    from datasets import ClassLabel

    inner = feature.get(key) if isinstance(feature, dict) else None
    if inner is None and isinstance(getattr(feature, "feature", None), dict):  # List({...})
        inner = feature.feature.get(key)
    inner = getattr(inner, "feature", inner)  # {key: List(ClassLabel)}
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def _objects(value, where: str, bbox_key: str, category_key: str) -> list[tuple]:
    """``[(bbox, category)]`` of one row's objects column, for either layout."""
    if value is None:
        return []
    if isinstance(value, dict):
        boxes, cats = value.get(bbox_key) or [], value.get(category_key) or []
        if len(boxes) != len(cats):
            raise BadAnnotation(f"{where}: {len(boxes)} '{bbox_key}' but {len(cats)} '{category_key}' values")
        return list(zip(boxes, cats))
    if isinstance(value, list) and all(isinstance(o, dict) for o in value):
        return [(o.get(bbox_key), o.get(category_key)) for o in value]
    raise BadAnnotation(f"{where}: expected a dict of lists or a list of dicts, got {type(value).__name__}")


def _image_bytes(value, where: str) -> bytes:
    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"]
    if isinstance(value, dict) and value.get("path") and Path(value["path"]).is_file():
        return Path(value["path"]).read_bytes()
    raise BadAnnotation(f"{where}: no image bytes or readable path")


def from_hf(
    dataset,
    img_root,
    split: str | None = None,
    bbox_format: str = "coco",
    bbox_normalized: bool = False,
    image_column: str = "image",
    objects_column: str = "objects",
    bbox_key: str = "bbox",
    category_key: str = "category",
    on_bad_record: str = "error",
) -> tuple[list[dict], ConversionSummary]:
    """Convert one split of a ``datasets`` dataset, writing its images under ``img_root``.

    Args:
        dataset: a ``save_to_disk`` directory, or a dataset name for ``load_dataset``.
        img_root: directory the images are written to (created); the records' image root.
        split: which split (may be left out when the saved dataset has one).
        bbox_format: ``coco``, ``xyxy`` or ``yolo`` (see the module docstring).
        bbox_normalized: ``coco`` / ``xyxy`` boxes are in [0, 1] of the image, not pixels.
        image_column: the ``Image`` column.
        objects_column: the column of per-image objects.
        bbox_key: the box field inside ``objects``.
        category_key: the category field inside ``objects`` (``ClassLabel`` id or name).
        on_bad_record: ``"error"`` (raise at the first malformed object) or ``"skip"`` (skip its row).
    Returns:
        ``(records, summary)``: one record per row, in order; ``bbox_aabb`` xyxy in [0, 1].
    Raises:
        ValueError naming the dataset, split, row and object.
    """
    from datasets import Image
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if bbox_format not in BBOX_FORMATS:
        raise ValueError(f"bbox_format must be one of {BBOX_FORMATS}, got {bbox_format!r}")
    ds, split = _load(str(dataset), split)
    for column in (image_column, objects_column):
        if column not in ds.column_names:
            raise ValueError(f"{dataset}: no column {column!r}; columns are {ds.column_names}")
    if not isinstance(ds.features[image_column], Image):
        raise ValueError(f"{dataset}: column {image_column!r} is a {type(ds.features[image_column]).__name__}, not an Image")
    names = _category_names(ds.features[objects_column], category_key)
    ds = ds.cast_column(image_column, Image(decode=False))
    root = Path(img_root)
    root.mkdir(parents=True, exist_ok=True)
    summary = ConversionSummary("hf", f"{dataset} [{split}]", str(root))

    def build(index: int) -> dict:
        row = ds[index]
        where = f"{dataset} [{split}], row {index}"
        data = _image_bytes(row[image_column], where)
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                (width, height), ext = img.size, _EXTENSIONS.get(img.format or "", ".png")
        except (UnidentifiedImageError, OSError) as err:
            raise BadAnnotation(f"{where}: cannot read the image: {err}") from None
        objects = []
        for j, (bbox, cat) in enumerate(_objects(row[objects_column], where, bbox_key, category_key)):
            obj = _object(bbox, cat, names, category_key, bbox_format, bbox_normalized, width, height, summary, f"{where}, object {j}")
            if obj is not None:
                objects.append({**obj, "obj_id": j})
        name = f"{re.sub(r'[^A-Za-z0-9]+', '_', split)}_{index:06d}{ext}"
        (root / name).write_bytes(data)
        return record(name, objects)

    return convert_each(range(len(ds)), build, summary, on_bad_record), summary


def _object(bbox, cat, names, category_key: str, bbox_format: str, normalized: bool, width: int, height: int, summary: ConversionSummary, where: str):
    if isinstance(cat, str) and cat.strip():
        cls = cat.strip()
    elif isinstance(cat, int) and not isinstance(cat, bool) and names is not None and 0 <= cat < len(names):
        cls = names[cat]
    elif isinstance(cat, int) and names is not None:
        raise BadAnnotation(f"{where}: unknown category id {cat} (the ClassLabel has {len(names)} names)")
    elif isinstance(cat, int) and not isinstance(cat, bool):
        raise BadAnnotation(f"{where}: category id {cat} has no name (objects.{category_key} is not a ClassLabel)")
    else:
        raise BadAnnotation(f"{where}: category must be a name or a ClassLabel id, got {cat!r}")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise BadAnnotation(f"{where}: bbox must be 4 numbers ({bbox_format}), got {bbox!r}")
    a, b, c, d = finite_numbers(bbox, where, "bbox")
    if bbox_format == "coco":
        check_size(c, d, where)
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif bbox_format == "yolo":
        check_size(c, d, where)
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        check_size(c - a, d - b, where)
        x1, y1, x2, y2 = a, b, c, d
    if bbox_format == "yolo" or normalized:
        box = unit_box(x1, y1, x2, y2, summary, where)
    else:
        box = pixel_box(x1, y1, x2, y2, width, height, summary, where)
    return None if box is None else {"class": cls, "bbox_aabb": box}
