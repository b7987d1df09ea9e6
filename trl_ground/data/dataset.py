"""Validated records -> a ``datasets.Dataset`` of Qwen3-VL grounding conversations.

Each row is one (image, query) pair in TRL's conversational prompt-completion form::

    image       path of the image (loaded lazily, resized for Qwen3-VL, by the dataset's transform)
    prompt      [{"role": "system", ...}, {"role": "user", "content": "Locate every ship ..."}]
    completion  [{"role": "assistant", "content": '[{"bbox_2d": [x1, y1, x2, y2], "label": "ship"}]'}]
    gt_boxes    list of [x1, y1, x2, y2], normalized to [0, 1] (what the rewards read)
    class       the queried class
    mode        primary | class | referring | negative
    is_unique   for referring rows: the object's ``is_unique`` flag (else None)
    image_id    the record's ``image`` name, record    the record's index in its file
    crop        only when the data is tiled (``tile_size``): the tile's pixel window
                ``[x0, y0, x1, y1]`` in the image (the loader crops it; boxes are the tile's)

TRL's collator inserts the image placeholder before the first user text. Target answers
use Qwen3-VL's 0..1000 integers through :func:`rewards.to_qwen_answer` (the single place
where boxes become answer text).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import numpy as np

from rewards import to_qwen_answer

from .images import open_rgb
from .prompts import describe_object, grounding_prompt
from .records import GroundingRecord, load_records

if TYPE_CHECKING:  # the settings are read, not built, here
    from ..config.data import DataArguments

__all__ = ["ImageLoader", "build_dataset", "build_examples", "no_examples_reason", "smart_resize", "tile_if_asked"]

logger = logging.getLogger(__name__)


def _row(record: GroundingRecord, query: str, boxes: np.ndarray, cls: str, mode: str, args: DataArguments, unique=None) -> dict:
    crop = {} if record.crop is None else {"crop": list(record.crop)}
    return {
        **crop,
        "image": str(record.image_path),
        "prompt": grounding_prompt(query, args.system_prompt),
        "completion": [{"role": "assistant", "content": to_qwen_answer(boxes, cls)}],
        "gt_boxes": boxes.tolist(),
        "class": cls,
        "mode": mode,
        "is_unique": unique,
        "image_id": record.image,
        "record": record.index,
    }


def build_examples(records: list[GroundingRecord], args: DataArguments, all_classes: list[str] | None = None) -> list[dict]:
    """Rows (see the module docstring) for ``records`` under ``args.prompt_mode``.

    ``primary``: one row per image for its most common class (images without objects are
    skipped); ``per_class``: one row per class present; ``referring``: one row per object
    with ``is_unique`` true, single-box target. ``add_negatives`` adds, per image (on a
    ``negative_fraction`` of the images), one row for a class of ``all_classes`` absent
    from it (target ``[]``).
    """
    rng = random.Random(args.example_seed)
    negative_rng = random.Random(args.example_seed + 1)  # separate, so the fraction leaves the classes drawn unchanged
    classes = sorted(all_classes if all_classes is not None else {o.cls for r in records for o in r.objects})
    rows = []
    for rec in records:
        present = rec.classes
        if args.prompt_mode == "primary" and present:
            cls = present[0]
            rows.append(_row(rec, args.query_template.replace("{class}", cls), rec.boxes_of(cls), cls, "primary", args))
        elif args.prompt_mode == "per_class":
            for cls in present:
                rows.append(_row(rec, args.query_template.replace("{class}", cls), rec.boxes_of(cls), cls, "class", args))
        elif args.prompt_mode == "referring":
            for obj in rec.objects:
                if obj.is_unique:
                    query = args.referring_template.replace("{description}", describe_object(obj.cls, obj.size, obj.position)).replace("{class}", obj.cls)
                    rows.append(_row(rec, query, np.asarray([obj.box]), obj.cls, "referring", args, unique=True))
        if args.add_negatives and (args.negative_fraction >= 1.0 or negative_rng.random() < args.negative_fraction):
            absent = [c for c in classes if c not in present]
            if absent:
                cls = rng.choice(absent)
                rows.append(_row(rec, args.query_template.replace("{class}", cls), np.zeros((0, 4)), cls, "negative", args))
    return rows


def tile_if_asked(records: list[GroundingRecord], args: DataArguments, source) -> list[GroundingRecord]:
    """``records`` cut into tiles when ``args.tile_size`` is set (a warning counts the boxes
    that no tile keeps), else unchanged."""
    if not args.tile_size:
        return records
    from .tiled_data import tile_records

    tiles, report = tile_records(records, args.tile_size, args.tile_overlap, args.tile_min_visible, str(source))
    logger.info("%s", report.line())
    if report.boxes_lost:
        logger.warning("%s", report.lost_line())
    return tiles


def smart_resize(height: int, width: int, factor: int = 32, min_pixels: int = 32 * 32, max_pixels: int = 448 * 448):
    """Qwen-VL's resizing rule: both sides multiples of ``factor`` (patch 16 x merge 2),
    aspect ratio kept as closely as possible, area within ``[min_pixels, max_pixels]``."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as qwen_smart_resize

    return qwen_smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def no_examples_reason(json_path, records: list[GroundingRecord], args: DataArguments) -> str:
    """Why :func:`build_examples` gave no row for ``records`` (for the error message)."""
    if not records:
        return f"{json_path}: no valid record (every record was skipped)"
    if not any(r.objects for r in records):
        return (
            f"{json_path}: no training example: all {len(records)} records have 'objects': [] and prompt_mode "
            f"{args.prompt_mode!r} asks about the objects of each image (an image without objects gives no example, "
            "and there is no class to ask about in a negative query)"
        )
    if args.prompt_mode == "referring":
        return f"{json_path}: no training example: prompt_mode 'referring' needs objects with \"is_unique\": true, and none has it"
    return f"{json_path}: no examples could be built (prompt_mode={args.prompt_mode!r})"


class ImageLoader:
    """Dataset transform: turns the ``image`` path column into 8-bit RGB PIL images
    (:func:`trl_ground.data.images.to_rgb`: 16-bit, float, palette and transparent images keep
    their contents), cropped to the ``crop`` column's window when there is one (tiles; the
    column is consumed), resized with :func:`smart_resize`, so that the processor does no
    further resizing. Picklable."""

    def __init__(self, min_pixels: int, max_pixels: int, factor: int = 32):
        self.min_pixels, self.max_pixels, self.factor = min_pixels, max_pixels, factor

    def resize(self, img):
        """``img`` (RGB) resized by :func:`smart_resize` (unchanged when it already fits)."""
        from PIL import Image

        h, w = smart_resize(img.height, img.width, self.factor, self.min_pixels, self.max_pixels)
        return img if (w, h) == img.size else img.resize((w, h), Image.Resampling.BICUBIC)

    def load(self, path: str, crop=None):
        """The image at ``path`` (its pixel window ``crop`` if given), RGB and resized;
        raises PIL's errors on a broken file."""
        img = open_rgb(path)
        return self.resize(img if crop is None else img.crop(tuple(crop)))

    def __call__(self, batch: dict) -> dict:
        batch = dict(batch)
        crops = batch.pop("crop", None) or [None] * len(batch["image"])
        batch["image"] = [self.load(p, c) for p, c in zip(batch["image"], crops)]
        return batch


def build_dataset(
    json_path,
    img_root,
    args: DataArguments,
    all_classes: list[str] | None = None,
    with_completion: bool = True,
    check_images: bool = True,
    source_format: str = "json",
):
    """Load, validate and convert ``json_path`` into a ``datasets.Dataset`` with lazy images
    (without the ``completion`` column if ``with_completion`` is False: for GRPO).

    ``check_images``: open every image first (see :func:`trl_ground.data.records.load_records`).
    ``source_format`` other than ``json`` reads a COCO file (``json_path``) or YOLO / DOTA
    folders (images under ``img_root``, labels in ``args.train_labels``) through
    :func:`trl_ground.data.formats.load_source_records`, into the same validated records.
    With ``args.tile_size``, the records are cut into tiles (:func:`trl_ground.data.tiled_data.tile_records`;
    boxes that no tile keeps are counted in a warning).

    Returns ``(dataset, records)``. Raises ``ValueError`` on bad data (see
    :func:`trl_ground.data.records.load_records`) or when no example could be built.
    """
    from datasets import Dataset

    if source_format == "json":
        records, _ = load_records(json_path, img_root, on_bad_record=args.on_bad_record, check_images=check_images)
    else:
        from .formats import load_source_records

        records = load_source_records(
            source_format, json_path, img_root, args.train_labels, args.train_classes, args.on_bad_record, check_images
        )
    records = tile_if_asked(records, args, json_path or img_root)
    rows = build_examples(records, args, all_classes)
    if not rows:
        raise ValueError(no_examples_reason(json_path or img_root, records, args))
    dataset = Dataset.from_list(rows)
    if not with_completion:
        dataset = dataset.remove_columns(["completion"])
    dataset.set_transform(ImageLoader(args.min_pixels, args.max_pixels))
    return dataset, records
