"""Where the training data is and how records become prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.formats import TRAIN_FORMATS
from ..data.prompts import DEFAULT_QUERY, DEFAULT_REFERRING_QUERY, DEFAULT_SYSTEM_PROMPT

__all__ = ["BAD_RECORD_POLICIES", "PROMPT_MODES", "TRAIN_FORMATS", "DataArguments"]

PROMPT_MODES = ("primary", "per_class", "referring")
# What training reads directly (a Hugging Face dataset is converted once instead: its images are written out).
BAD_RECORD_POLICIES = ("error", "skip")


@dataclass
class DataArguments:
    """Where the data is and how it becomes prompts. Every field is a YAML key and a CLI flag.

    Parameters:
        > Files

        train_json (`str` or `None`, defaults to `None`):
            Training JSON: a list of records (see the README's "Your data"); with
            ``train_format: coco``, the COCO annotations file.
        train_format (`str`, defaults to `"json"`):
            ``json`` (the project's), or ``coco`` / ``yolo`` / ``dota`` read directly through
            the converters of :mod:`trl_ground.data.formats` (images under ``img_root``).
        train_labels (`str` or `None`), train_classes (`str` or `None`):
            With ``yolo`` / ``dota``: the label folder; with ``yolo``: the class names file.
        img_root (`str` or `None`, defaults to `None`):
            Directory that the records' image paths are relative to (no path may leave it).
        eval_json (`str` or `None`, defaults to `None`):
            Optional evaluation JSON, same format and image root.
        on_bad_record (`str`, defaults to `"error"`):
            ``"error"``: stop at the first bad record; ``"skip"``: skip bad records and log them.
        > Prompts

        prompt_mode (`str`, defaults to `"primary"`):
            ``"primary"``: one query per image for its most common class; ``"per_class"``: one
            per class present; ``"referring"``: one per object with ``is_unique: true``.
        add_negatives (`bool`, defaults to `False`):
            Add per image a query for a class absent from it (target ``[]``).
        negative_fraction (`float`, defaults to `1.0`):
            With ``add_negatives``: the fraction of images that get the negative query.
        system_prompt (`str`), query_template (`str`, with ``{class}``), referring_template
            (`str`, with ``{description}`` and ``{class}``): the words of the conversation.
        example_seed (`int`, defaults to `0`):
            Seed of the negative classes and of the synthetic data.

        > Images

        image_check (`bool`, defaults to `True`):
            Open every image (train and eval) before training; off for huge trusted sets (only
            existence is checked then; the README's "Your data" gives the time per 1,000 images).
        max_pixels (`int`, defaults to `200704` = 448 x 448), min_pixels (`int`, defaults to `1024`):
            Images are resized (sides multiples of 32) to an area within these bounds.

        > Large images

        tile_size (`int`, defaults to `0`), tile_overlap (`int`, defaults to `200`),
            tile_min_visible (`float`, defaults to `0.5`):
            With ``tile_size`` > 0, each image is cut, in memory when the dataset is built,
            into ``tile_size`` px tiles every ``tile_size - tile_overlap`` px (DOTA's split,
            the last tile flush with the edge); a box goes to a tile holding at least
            ``tile_min_visible`` of its area, clipped (:mod:`trl_ground.data.tiled_data`). For
            crowded images whose answers would pass ``max_length``.

        > Demo

        make_synthetic_data (`int`, defaults to `0`):
            If ``train_json`` is missing, first write this many synthetic images there.
    """

    train_json: str | None = field(default=None, metadata={"help": "Training JSON (list of records)."})
    train_format: str = field(
        default="json",
        metadata={"help": f"Training data format, one of {TRAIN_FORMATS}: coco / yolo / dota are read directly (images under img_root)."},
    )
    train_labels: str | None = field(default=None, metadata={"help": "With train_format yolo / dota: the label folder."})
    train_classes: str | None = field(default=None, metadata={"help": "With train_format yolo: the class names file (or data.yaml)."})
    img_root: str | None = field(default=None, metadata={"help": "Directory that image paths are relative to."})
    eval_json: str | None = field(default=None, metadata={"help": "Optional evaluation JSON (same image root)."})
    on_bad_record: str = field(default="error", metadata={"help": f"One of {BAD_RECORD_POLICIES}: stop at or skip bad records."})
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
    example_seed: int = field(default=0, metadata={"help": "Seed for negative-class sampling and synthetic data."})
    image_check: bool = field(
        default=True,
        metadata={"help": "Open every image before training; off for huge trusted sets (see the README for the time per 1,000 images)."},
    )
    max_pixels: int = field(default=448 * 448, metadata={"help": "Images are resized to at most this many pixels."})
    min_pixels: int = field(default=32 * 32, metadata={"help": "... and at least this many."})
    tile_size: int = field(
        default=0, metadata={"help": "Cut each image into tiles of this many pixels when the dataset is built (0: no tiling)."}
    )
    tile_overlap: int = field(default=200, metadata={"help": "With tile_size: pixels shared by neighbouring tiles."})
    tile_min_visible: float = field(
        default=0.5, metadata={"help": "With tile_size: a box goes to a tile holding at least this fraction of its area (clipped)."}
    )
    make_synthetic_data: int = field(
        default=0, metadata={"help": "Demo: if train_json is missing, first write this many synthetic images there."}
    )

    def __post_init__(self):
        if self.prompt_mode not in PROMPT_MODES:
            raise ValueError(f"prompt_mode must be one of {PROMPT_MODES}, got {self.prompt_mode!r}")
        if self.on_bad_record not in BAD_RECORD_POLICIES:
            raise ValueError(f"on_bad_record must be one of {BAD_RECORD_POLICIES}, got {self.on_bad_record!r}")
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
        if self.tile_size:
            from ..data.tiling import check_tiling

            check_tiling(self.tile_size, self.tile_overlap, self.tile_min_visible)
        elif self.tile_size < 0:
            raise ValueError(f"tile_size must be >= 0 (0: no tiling), got {self.tile_size}")
        if self.make_synthetic_data < 0:
            raise ValueError(f"make_synthetic_data must be >= 0, got {self.make_synthetic_data}")
