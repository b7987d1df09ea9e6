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

TRL's collator inserts the image placeholder before the first user text. Target answers
use Qwen3-VL's 0..1000 integers through :func:`rewards.to_qwen_answer` (the single place
where boxes become answer text).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import numpy as np

from rewards import to_qwen_answer

from .formats import TRAIN_FORMATS
from .records import GroundingRecord, load_records

__all__ = [
    "DEFAULT_QUERY",
    "DEFAULT_REFERRING_QUERY",
    "DEFAULT_SYSTEM_PROMPT",
    "PROMPT_MODES",
    "DataArguments",
    "ImageLoader",
    "build_dataset",
    "build_examples",
    "grounding_prompt",
    "smart_resize",
]

logger = logging.getLogger(__name__)

PROMPT_MODES = ("primary", "per_class", "referring")
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant that locates objects in images."
DEFAULT_QUERY = (
    "Locate every {class} in the image. Answer with a JSON list of "
    '{"bbox_2d": [x1, y1, x2, y2], "label": "{class}"} using coordinates from 0 to 1000, or [] if there is none.'
)
DEFAULT_REFERRING_QUERY = (
    'Locate {description} in the image. Answer with a JSON list holding one {"bbox_2d": [x1, y1, x2, y2], '
    '"label": "{class}"} using coordinates from 0 to 1000.'
)


@dataclass
class DataArguments:
    """Where the data is and how it becomes prompts (every field is a YAML key and a CLI flag)."""

    train_json: str | None = field(default=None, metadata={"help": "Training JSON (list of records); with train_format coco, the COCO file."})
    train_format: str = field(
        default="json",
        metadata={"help": "Training data format: json (the project's), or coco / yolo / dota read directly (images under img_root)."},
    )
    train_labels: str | None = field(default=None, metadata={"help": "With train_format yolo / dota: the label folder."})
    train_classes: str | None = field(default=None, metadata={"help": "With train_format yolo: the class names file (or data.yaml)."})
    img_root: str | None = field(default=None, metadata={"help": "Directory that image paths are relative to."})
    eval_json: str | None = field(default=None, metadata={"help": "Optional evaluation JSON (same image root)."})
    prompt_mode: str = field(default="primary", metadata={"help": f"One of {PROMPT_MODES}."})
    add_negatives: bool = field(default=False, metadata={"help": "Add one query per image for an absent class (target [])."})
    negative_fraction: float = field(
        default=1.0, metadata={"help": "With add_negatives: the fraction of images that get a negative query (chosen by example_seed)."}
    )
    system_prompt: str = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "System instruction."})
    query_template: str = field(default=DEFAULT_QUERY, metadata={"help": "User query; {class} is replaced."})
    referring_template: str = field(
        default=DEFAULT_REFERRING_QUERY, metadata={"help": "Referring query; {description} and {class} are replaced."}
    )
    max_pixels: int = field(default=448 * 448, metadata={"help": "Images are resized to at most this many pixels."})
    min_pixels: int = field(default=32 * 32, metadata={"help": "... and at least this many."})
    on_bad_record: str = field(default="error", metadata={"help": "'error' or 'skip' bad records."})
    example_seed: int = field(default=0, metadata={"help": "Seed for negative-class sampling and synthetic data."})
    make_synthetic_data: int = field(
        default=0, metadata={"help": "Demo: if train_json is missing, first write this many synthetic images there."}
    )

    def __post_init__(self):
        if self.prompt_mode not in PROMPT_MODES:
            raise ValueError(f"prompt_mode must be one of {PROMPT_MODES}, got {self.prompt_mode!r}")
        if self.on_bad_record not in ("error", "skip"):
            raise ValueError(f"on_bad_record must be 'error' or 'skip', got {self.on_bad_record!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}")
        if "{class}" not in self.query_template:
            raise ValueError("query_template must contain {class}")
        if not 0.0 <= self.negative_fraction <= 1.0:
            raise ValueError(f"negative_fraction must lie in [0, 1], got {self.negative_fraction}")
        if self.train_format not in TRAIN_FORMATS:
            raise ValueError(f"train_format must be one of {TRAIN_FORMATS}, got {self.train_format!r}")
        if self.train_format in ("yolo", "dota") and not self.train_labels:
            raise ValueError(f"train_format {self.train_format} needs train_labels (the label folder)")
        if self.train_format == "yolo" and not self.train_classes:
            raise ValueError("train_format yolo needs train_classes (the class names file)")


def grounding_prompt(query: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    """The prompt messages of one query (the image is attached by TRL's collator or the predictor)."""
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": query}]


def _describe(obj) -> str:
    """'the small ship at the top left' from obj_size / class / obj_position."""
    words = ["the"] + ([obj.size] if obj.size else []) + [obj.cls]
    if obj.position:
        words += ["at the", obj.position]
    return " ".join(words)


def _row(record: GroundingRecord, query: str, boxes: np.ndarray, cls: str, mode: str, args: DataArguments, unique=None) -> dict:
    return {
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
                    query = args.referring_template.replace("{description}", _describe(obj)).replace("{class}", obj.cls)
                    rows.append(_row(rec, query, np.asarray([obj.box]), obj.cls, "referring", args, unique=True))
        if args.add_negatives and (args.negative_fraction >= 1.0 or negative_rng.random() < args.negative_fraction):
            absent = [c for c in classes if c not in present]
            if absent:
                cls = rng.choice(absent)
                rows.append(_row(rec, args.query_template.replace("{class}", cls), np.zeros((0, 4)), cls, "negative", args))
    return rows


def smart_resize(height: int, width: int, factor: int = 32, min_pixels: int = 32 * 32, max_pixels: int = 448 * 448):
    """Qwen-VL's resizing rule: both sides multiples of ``factor`` (patch 16 x merge 2),
    aspect ratio kept as closely as possible, area within ``[min_pixels, max_pixels]``."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as qwen_smart_resize

    return qwen_smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


class ImageLoader:
    """Dataset transform: turns the ``image`` path column into RGB PIL images resized with
    :func:`smart_resize`, so that the processor does no further resizing. Picklable."""

    def __init__(self, min_pixels: int, max_pixels: int, factor: int = 32):
        self.min_pixels, self.max_pixels, self.factor = min_pixels, max_pixels, factor

    def load(self, path: str):
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("RGB")
        h, w = smart_resize(img.height, img.width, self.factor, self.min_pixels, self.max_pixels)
        return img if (w, h) == img.size else img.resize((w, h), Image.Resampling.BICUBIC)

    def __call__(self, batch: dict) -> dict:
        batch = dict(batch)
        batch["image"] = [self.load(p) for p in batch["image"]]
        return batch


def build_dataset(
    json_path, img_root, args: DataArguments, all_classes: list[str] | None = None, with_completion: bool = True, source_format: str = "json"
):
    """Load, validate and convert ``json_path`` into a ``datasets.Dataset`` with lazy images
    (without the ``completion`` column if ``with_completion`` is False: for GRPO).

    ``source_format`` other than ``json`` reads a COCO file (``json_path``) or YOLO / DOTA
    folders (images under ``img_root``, labels in ``args.train_labels``) through
    :func:`trl_ground.formats.load_source_records`, into the same validated records.

    Returns ``(dataset, records)``. Raises ``ValueError`` on bad data (see
    :func:`trl_ground.records.load_records`) or when no example could be built.
    """
    from datasets import Dataset

    if source_format == "json":
        records, _ = load_records(json_path, img_root, on_bad_record=args.on_bad_record)
    else:
        from .formats import load_source_records

        records = load_source_records(source_format, json_path, img_root, args.train_labels, args.train_classes, args.on_bad_record)
    rows = build_examples(records, args, all_classes)
    if not rows:
        raise ValueError(f"{json_path or img_root}: no examples could be built (prompt_mode={args.prompt_mode!r})")
    dataset = Dataset.from_list(rows)
    if not with_completion:
        dataset = dataset.remove_columns(["completion"])
    dataset.set_transform(ImageLoader(args.min_pixels, args.max_pixels))
    return dataset, records
