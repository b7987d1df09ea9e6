"""DOTA label folders -> records.

One ``.txt`` per image (``images/P0001.png`` -> ``labelTxt/P0001.txt``; a missing file means
no objects). Each line is an oriented quadrilateral in pixels of the image::

    x1 y1 x2 y2 x3 y3 x4 y4 class difficult

which becomes the axis-aligned box of its four corners, clipped to the image (whose size is
read from the image file). The ``imagesource:`` / ``gsd:`` header lines of DOTA v1.0 files
are skipped; a missing ``difficult`` means 0. ``difficult`` is kept on the object
(``"difficult": 0 | 1``) and ``drop_difficult`` leaves those objects out. ``obj_id`` is
the line number.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    BadAnnotation,
    ConversionSummary,
    convert_each,
    finite_numbers,
    image_size,
    list_images,
    orphan_labels,
    pixel_box,
    read_lines,
    record,
)

__all__ = ["from_dota"]

_HEADERS = ("imagesource:", "gsd:")


def from_dota(images, labels, drop_difficult: bool = False, on_bad_record: str = "error") -> tuple[list[dict], ConversionSummary]:
    """Convert a DOTA dataset.

    Args:
        images: folder of images (searched recursively); the records' image root.
        labels: folder of ``.txt`` label files mirroring ``images`` (DOTA's ``labelTxt``).
        drop_difficult: leave out objects marked ``difficult``.
        on_bad_record: ``"error"`` (raise at the first malformed line) or ``"skip"`` (skip its image).
    Returns:
        ``(records, summary)``: one record per image, sorted by path; ``bbox_aabb`` xyxy in [0, 1].
    Raises:
        ValueError naming the label file and line.
    """
    labels_dir = Path(labels)
    if not labels_dir.is_dir():
        raise ValueError(f"label folder {labels} is not a directory")
    found = list_images(images)
    summary = ConversionSummary("dota", str(labels_dir), str(images))

    def build(rel: Path) -> dict:
        label = labels_dir / rel.with_suffix(".txt")
        objects = []
        if label.is_file():
            size = None
            for n, line in enumerate(read_lines(label), start=1):
                if not line.strip() or line.strip().lower().startswith(_HEADERS):
                    continue
                size = size or image_size(Path(images) / rel, f"{label}, line {n}")
                obj = _object(line, size, drop_difficult, summary, f"{label}, line {n}")
                if obj is not None:
                    objects.append({**obj, "obj_id": n})
        return record(rel.as_posix(), objects)

    records = convert_each(found, build, summary, on_bad_record)
    orphan_labels(labels_dir, found, summary)
    return records, summary


def _object(line: str, size: tuple[int, int], drop_difficult: bool, summary: ConversionSummary, where: str):
    parts = line.split()
    n_numbers = 0
    for token in parts:
        try:
            float(token)
        except ValueError:
            break
        n_numbers += 1
    if n_numbers != 8 or len(parts) not in (9, 10):
        raise BadAnnotation(
            f"{where}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 class difficult' (8 numbers), got {n_numbers} numbers: {line.strip()!r}"
        )
    coords = finite_numbers(parts[:8], where, "corner coordinates")
    difficult = parts[9] if len(parts) == 10 else "0"
    if difficult not in ("0", "1"):
        raise BadAnnotation(f"{where}: difficult must be 0 or 1, got {difficult!r}")
    if drop_difficult and difficult == "1":
        summary.skip("difficult (dropped by --drop-difficult)", where)
        return None
    xs, ys = coords[0::2], coords[1::2]
    box = pixel_box(min(xs), min(ys), max(xs), max(ys), size[0], size[1], summary, where)
    return None if box is None else {"class": parts[8], "bbox_aabb": box, "difficult": int(difficult)}
