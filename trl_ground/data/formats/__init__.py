"""The data people already have -> the project's records, validated as training validates.

    records, summary = convert("yolo", images="data/images", labels="data/labels", classes="data/classes.txt")

One entry, :func:`convert`, and a registry, :data:`FORMATS`, of the source formats:

========  ============================================  =================================
format    source                                        keyword arguments
========  ============================================  =================================
``coco``  COCO detection JSON, pixel ``[x, y, w, h]``   ``annotations``, ``img_root``, ``keep_crowd``
``yolo``  one ``class cx cy w h`` file per image        ``images``, ``labels``, ``classes``
``dota``  one ``x1 y1 .. x4 y4 class difficult`` file   ``images``, ``labels``, ``drop_difficult``
``hf``    ``datasets`` dataset (image + objects)        ``dataset``, ``img_root``, ``split``, ``bbox_format`` ...
``json``  the project's own JSON (to tile it)           ``annotations``, ``img_root``
========  ============================================  =================================

Every converted record then goes through :func:`trl_ground.data.records.validate_records`, the
checks that training applies to a JSON file. :func:`load_source_records` is what training
calls for ``--train-format coco|yolo|dota``. COCO results out: :mod:`.coco_results`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from ..records import GroundingRecord, validate_records
from .base import BadAnnotation, ConversionSummary
from .coco import from_coco
from .dota import from_dota
from .hf import BBOX_FORMATS, from_hf
from .project_json import from_json
from .yolo import from_yolo

__all__ = [
    "BBOX_FORMATS",
    "FORMATS",
    "TRAIN_FORMATS",
    "BadAnnotation",
    "ConversionSummary",
    "SourceFormat",
    "convert",
    "load_source_records",
]

# The formats training reads directly (the others are converted first: trl-ground-convert-data)
TRAIN_FORMATS = ("json", "coco", "yolo", "dota")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFormat:
    """A source format: its converter ``fn(**options, on_bad_record) -> (records, summary)``,
    the options it requires and one line for the help."""

    name: str
    converter: Callable[..., tuple[list[dict], ConversionSummary]]
    required: tuple[str, ...]
    description: str


FORMATS: dict[str, SourceFormat] = {
    f.name: f
    for f in (
        SourceFormat("coco", from_coco, ("annotations", "img_root"), "COCO detection JSON: pixel [x, y, w, h], categories by name"),
        SourceFormat("yolo", from_yolo, ("images", "labels", "classes"), "YOLO: one 'class_id cx cy w h' (normalized) .txt per image"),
        SourceFormat("dota", from_dota, ("images", "labels"), "DOTA: one 'x1 y1 ... x4 y4 class difficult' (pixels) .txt per image"),
        SourceFormat("hf", from_hf, ("dataset", "img_root"), "Hugging Face datasets: an Image column and an objects column"),
        SourceFormat("json", from_json, ("annotations", "img_root"), "the project's own JSON (e.g. to cut it into tiles with --tile)"),
    )
}


def _convert(fmt: str, on_bad_record: str, check_images: bool, options: dict):
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; one of {sorted(FORMATS)}")
    spec = FORMATS[fmt]
    missing = [name for name in spec.required if options.get(name) is None]
    if missing:
        raise ValueError(f"format {fmt!r} needs {', '.join(missing)}")
    dicts, summary = spec.converter(**options, on_bad_record=on_bad_record)
    records, skipped = validate_records(dicts, summary.img_root, summary.source, on_bad_record, check_images)
    for reason in skipped:
        summary.skip("failed the records' validation", reason)
    if skipped:
        dicts = [dicts[r.index] for r in records]
        summary.recount(dicts)
    return dicts, records, summary


def convert(fmt: str, on_bad_record: str = "error", check_images: bool = True, **options) -> tuple[list[dict], ConversionSummary]:
    """Convert a source to record dicts of the project's JSON format.

    Args:
        fmt: a key of :data:`FORMATS`.
        on_bad_record: ``"error"``: malformed input raises; ``"skip"``: its image is left out (counted).
        check_images: open every image (the records' validation; False: only require the files).
        **options: the format's keyword arguments (see the module docstring).
    Returns:
        ``(records, summary)``: dicts with ``image``, ``image_path`` (relative to
        ``summary.img_root``) and ``objects`` (``bbox_aabb`` xyxy in [0, 1]).
    Raises:
        ValueError, one line naming the source file and line or annotation id.
    """
    dicts, _, summary = _convert(fmt, on_bad_record, check_images, options)
    return dicts, summary


def load_source_records(
    fmt: str, train_json, img_root, labels=None, classes=None, on_bad_record: str = "error", check_images: bool = True
) -> list[GroundingRecord]:
    """Training's reader for ``--train-format coco|yolo|dota``: validated records, as
    :func:`trl_ground.data.records.load_records` returns them for a JSON file.

    Args:
        fmt: ``coco`` (``train_json`` is the COCO file, images under ``img_root``), ``yolo``
            or ``dota`` (images under ``img_root``, label files under ``labels``).
        train_json: the COCO annotations file (coco only).
        img_root: the image folder.
        labels: the label folder (yolo, dota).
        classes: the class names file (yolo).
        on_bad_record: ``"error"`` or ``"skip"``.
        check_images: open every image (the records' validation), as for a JSON file.
    """
    options = {
        "coco": {"annotations": train_json, "img_root": img_root},
        "yolo": {"images": img_root, "labels": labels, "classes": classes},
        "dota": {"images": img_root, "labels": labels},
    }
    if fmt not in options:
        raise ValueError(f"training reads the formats {TRAIN_FORMATS}, got {fmt!r}")
    _, records, summary = _convert(fmt, on_bad_record, check_images, options[fmt])
    logger.info("%s", "\n".join(summary.lines()))
    if summary.skipped:
        logger.warning("%s: left out %s", summary.source, ", ".join(f"{n} x {reason}" for reason, n in summary.skipped.most_common()))
    return records
