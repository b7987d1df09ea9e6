"""What every converter shares: the conversion summary, malformed-input handling, pixel ->
normalized boxes, image sizes and image listing.

A converter turns a source (COCO file, YOLO / DOTA folders, a Hugging Face dataset) into a
list of record dicts in the project's JSON format (:mod:`trl_ground.data.records`): ``image``,
``image_path`` (relative to the image root), ``objects: [{"class", "bbox_aabb", "obj_id",
...}]`` with ``bbox_aabb`` xyxy normalized to [0, 1].

Two kinds of trouble, kept apart:

- **malformed input** (a label line with 4 numbers, an unknown category id, a negative
  width ...) raises :class:`BadAnnotation`, a one-line ``ValueError`` naming the source file
  and line or annotation id; with ``on_bad_record="skip"`` the whole image is skipped instead
  and counted (an image that lost one of its boxes would teach the model to miss it);
- **well-formed boxes that cannot train** (zero width or height, entirely outside the image,
  crowd regions, DOTA ``difficult`` objects when asked) are dropped and counted by reason.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadAnnotation",
    "ConversionSummary",
    "image_size",
    "list_images",
    "pixel_box",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_EXAMPLES_KEPT = 5
_DECIMALS = 6


class BadAnnotation(ValueError):
    """Malformed source data; the message is one line naming the file and line / annotation id."""


@dataclass
class ConversionSummary:
    """What a conversion produced and what it left out.

    ``img_root`` is the directory the records' ``image_path`` values are relative to (the
    ``--img-root`` that training then needs); ``skipped`` counts dropped boxes and images
    by reason; ``examples`` keeps the first few messages of each reason.
    """

    fmt: str
    source: str
    img_root: str
    images: int = 0
    images_without_objects: int = 0
    boxes_per_class: Counter = field(default_factory=Counter)
    clipped: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, record: dict) -> None:
        """Count one converted record."""
        self.images += 1
        self.images_without_objects += not record["objects"]
        self.boxes_per_class.update(o["class"] for o in record["objects"])

    def recount(self, records: list[dict]) -> None:
        """Count images and boxes again, over ``records`` only."""
        self.images, self.images_without_objects, self.boxes_per_class = 0, 0, Counter()
        for rec in records:
            self.add(rec)

    def skip(self, reason: str, message: str) -> None:
        """Count one dropped box or image under ``reason``; keep ``message`` as an example."""
        self.skipped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < _EXAMPLES_KEPT:
            kept.append(message)

    def to_dict(self) -> dict:
        return {
            "format": self.fmt,
            "source": self.source,
            "img_root": self.img_root,
            "images": self.images,
            "images_without_objects": self.images_without_objects,
            "boxes": sum(self.boxes_per_class.values()),
            "boxes_per_class": dict(self.boxes_per_class.most_common()),
            "clipped_to_image": self.clipped,
            "skipped": dict(self.skipped.most_common()),
            "skipped_examples": self.examples,
        }

    def lines(self) -> list[str]:
        """The summary as printable lines."""
        out = [
            f"from {self.fmt}: {self.source}",
            f"images: {self.images} ({self.images_without_objects} without objects)",
            f"boxes: {sum(self.boxes_per_class.values())} ({self.clipped} clipped to the image)",
            "boxes per class:",
            *(f"  {cls:<20} {n}" for cls, n in self.boxes_per_class.most_common()),
        ]
        if self.skipped:
            out.append("skipped:")
            for reason, n in self.skipped.most_common():
                out.append(f"  {n:>6}  {reason}; first: {self.examples[reason][0]}")
        return out


def finite_numbers(values, where: str, what: str) -> list[float]:
    """``values`` as floats, or :class:`BadAnnotation` naming ``where`` and ``what``."""
    out = []
    for v in values:
        if isinstance(v, bool):
            raise BadAnnotation(f"{where}: {what} must be numbers, got {list(values)!r}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise BadAnnotation(f"{where}: {what} must be numbers, got {list(values)!r}") from None
        if not math.isfinite(f):
            raise BadAnnotation(f"{where}: {what} must be finite, got {list(values)!r}")
        out.append(f)
    return out


def check_size(w: float, h: float, where: str) -> None:
    """Negative width or height is malformed (zero is merely degenerate: see :func:`pixel_box`)."""
    if w < 0:
        raise BadAnnotation(f"{where}: negative width {w:g}")
    if h < 0:
        raise BadAnnotation(f"{where}: negative height {h:g}")


def pixel_box(x1: float, y1: float, x2: float, y2: float, width: float, height: float, summary: ConversionSummary, where: str):
    """Pixel ``xyxy`` -> ``[x1, y1, x2, y2]`` normalized to [0, 1] and clipped to the image.

    Returns None (and counts the reason in ``summary``) when the box has zero width or height
    or no part of it lies inside the image; counts a clipped box in ``summary.clipped``.
    """
    return unit_box(x1 / width, y1 / height, x2 / width, y2 / height, summary, where)


def unit_box(x1: float, y1: float, x2: float, y2: float, summary: ConversionSummary, where: str):
    """:func:`pixel_box` for coordinates already normalized to [0, 1]."""
    if x2 <= x1 or y2 <= y1:
        summary.skip("zero width or height", where)
        return None
    clipped = [min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        summary.skip("box outside the image", where)
        return None
    if clipped != [x1, y1, x2, y2]:
        summary.clipped += 1
    box = [round(v, _DECIMALS) for v in clipped]
    if box[2] <= box[0] or box[3] <= box[1]:  # narrower than the rounding: nothing left to train on
        summary.skip("zero width or height", where)
        return None
    return box


def image_size(path: Path, where: str) -> tuple[int, int]:
    """``(width, height)`` in pixels from the image file's header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise BadAnnotation(f"{where}: image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise BadAnnotation(f"{where}: cannot read image {path}: {err}") from None


def list_images(images_dir) -> list[Path]:
    """Image files under ``images_dir`` (recursively), as sorted paths relative to it."""
    root = Path(images_dir)
    if not root.is_dir():
        raise ValueError(f"image folder {images_dir} is not a directory")
    found = sorted(p.relative_to(root) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not found:
        raise ValueError(f"{images_dir}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def read_lines(path: Path) -> list[str]:
    """The lines of a text label file (errors name the file)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise BadAnnotation(f"{path}: not a UTF-8 text file ({err.reason})") from None


def record(image: str, objects: list[dict]) -> dict:
    """One record dict in the project's format; ``image`` is relative to the image root."""
    return {"image": image, "image_path": image, "objects": objects}


def orphan_labels(labels_dir: Path, images: list[Path], summary: ConversionSummary, ignore: tuple = ()) -> None:
    """Count label files under ``labels_dir`` that belong to no image."""
    wanted = {p.with_suffix(".txt") for p in images}
    ignored = {Path(p).resolve() for p in ignore}
    for label in sorted(labels_dir.rglob("*.txt")):
        if label.relative_to(labels_dir) not in wanted and label.resolve() not in ignored:
            summary.skip("label file without an image", str(label))


def convert_each(items, build, summary: ConversionSummary, on_bad_record: str) -> list[dict]:
    """``build(item) -> record dict`` for every item, counted in ``summary``.

    A :class:`BadAnnotation` propagates with ``on_bad_record="error"``; with ``"skip"`` the
    item's image is left out and counted as malformed.
    """
    if on_bad_record not in ("error", "skip"):
        raise ValueError(f"on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    records = []
    for item in items:
        try:
            rec = build(item)
        except BadAnnotation as err:
            if on_bad_record == "error":
                raise
            summary.skip("malformed annotation (image skipped)", str(err))
            continue
        summary.add(rec)
        records.append(rec)
    return records
