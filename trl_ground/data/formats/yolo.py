"""YOLO label folders -> records.

One ``.txt`` per image, at the image's path relative to the images folder with the suffix
``.txt`` (``images/train/a.jpg`` -> ``labels/train/a.txt``); a missing label file means the
image has no objects. Each line is ``class_id cx cy w h``: the box centre and size
normalized to [0, 1] of the image (no image is opened). Class names come from a text file
(one name a line, line ``i`` names id ``i``) or an Ultralytics ``data.yaml`` (``names:`` as
a list or an ``{id: name}`` mapping). ``obj_id`` is the line number.
"""

from __future__ import annotations

from pathlib import Path

from ..records import BOX_TOLERANCE
from .base import (
    BadAnnotation,
    ConversionSummary,
    check_size,
    convert_each,
    finite_numbers,
    list_images,
    orphan_labels,
    read_lines,
    record,
    unit_box,
)

__all__ = ["from_yolo", "read_class_names"]


def read_class_names(path) -> list[str]:
    """Class names by id from a names file (one per line) or a YAML file with ``names``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: classes file not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise ValueError(f"{path}: 'names' must map the ids 0..{len(names) - 1}, got ids {sorted(names)}")
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list):
            raise ValueError(f"{path}: expected a 'names' list or mapping")
    else:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{path}: class names must be non-empty strings, got {names!r}")
    return [n.strip() for n in names]


def from_yolo(images, labels, classes, on_bad_record: str = "error") -> tuple[list[dict], ConversionSummary]:
    """Convert a YOLO dataset.

    Args:
        images: folder of images (searched recursively); the records' image root.
        labels: folder of ``.txt`` label files mirroring ``images``.
        classes: class names file (``classes.txt`` / ``obj.names``) or ``data.yaml``.
        on_bad_record: ``"error"`` (raise at the first malformed line) or ``"skip"`` (skip its image).
    Returns:
        ``(records, summary)``: one record per image, sorted by path; ``bbox_aabb`` xyxy in [0, 1].
    Raises:
        ValueError naming the label file and line.
    """
    names = read_class_names(classes)
    labels_dir = Path(labels)
    if not labels_dir.is_dir():
        raise ValueError(f"label folder {labels} is not a directory")
    found = list_images(images)
    summary = ConversionSummary("yolo", str(labels_dir), str(images))

    def build(rel: Path) -> dict:
        label = labels_dir / rel.with_suffix(".txt")
        objects = []
        if label.is_file():
            for n, line in enumerate(read_lines(label), start=1):
                if line.strip():
                    obj = _object(line, names, summary, f"{label}, line {n}")
                    if obj is not None:
                        objects.append({**obj, "obj_id": n})
        return record(rel.as_posix(), objects)

    records = convert_each(found, build, summary, on_bad_record)
    orphan_labels(labels_dir, found, summary, ignore=(classes,))
    return records, summary


def _object(line: str, names: list[str], summary: ConversionSummary, where: str):
    parts = line.split()
    if len(parts) != 5:
        raise BadAnnotation(f"{where}: expected 5 values 'class_id cx cy w h', got {len(parts)}: {line.strip()!r}")
    try:
        cls = int(parts[0])
    except ValueError:
        raise BadAnnotation(f"{where}: class id must be an integer, got {parts[0]!r}") from None
    if not 0 <= cls < len(names):
        raise BadAnnotation(f"{where}: unknown class id {cls} (the classes file names ids 0..{len(names) - 1})")
    cx, cy, w, h = finite_numbers(parts[1:], where, "cx cy w h")
    check_size(w, h, where)
    lo, hi = -BOX_TOLERANCE, 1 + BOX_TOLERANCE
    if not (lo <= cx <= hi and lo <= cy <= hi and w <= hi and h <= hi):
        raise BadAnnotation(f"{where}: cx cy w h must be normalized to [0, 1] (pixels?), got {parts[1:]}")
    box = unit_box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, summary, where)
    return None if box is None else {"class": names[cls], "bbox_aabb": box}
