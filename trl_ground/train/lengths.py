"""How many tokens each training example takes, counted as TRL's vision collator builds it,
and the warning for the examples that ``max_length`` would cut.

TRL's ``DataCollatorForVisionLanguageModeling`` renders ``prompt`` and ``completion`` with the
chat template (:func:`trl.data_utils.apply_chat_template`), tokenizes both, concatenates them
and keeps the first ``max_length`` tokens: a longer example loses the end of its answer (its
last boxes) without a word. Here the same texts are tokenized, and the prompt's one
``<|image_pad|>`` counts as the image's tokens: ``(H / patch) * (W / patch) / merge^2`` of the
image resized by :func:`trl_ground.data.dataset.smart_resize` (448 x 448 -> 196).

Without a real tokenizer, :func:`counting_processor` gives the project's byte-level one (one
token per byte, Qwen's special tokens, a ChatML template): an upper bound for Qwen's.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from ..config.source_fields import trainer_fields
from ..data.dataset import smart_resize
from ..data.images import IMAGE_ERRORS, image_size
from ..model import MERGE_SIZE, PATCH_SIZE  # the processor's own values are used when it has them

__all__ = ["DEFAULT_MAX_LENGTH", "counting_processor", "example_lengths", "image_tokens", "too_long_message", "warn_if_too_long"]

logger = logging.getLogger(__name__)

# training's default max_length (the SFT config's field, read from its source: no TRL import)
DEFAULT_MAX_LENGTH = trainer_fields("sft")["max_length"].default
_NAMED = 5


def image_tokens(width: int, height: int, min_pixels: int, max_pixels: int, patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE) -> int:
    """Visual tokens of a ``width`` x ``height`` image once resized within ``[min_pixels, max_pixels]``."""
    h, w = smart_resize(height, width, patch_size * merge_size, min_pixels, max_pixels)
    return (h // patch_size) * (w // patch_size) // merge_size**2


def counting_processor(path: str | None = None):
    """``(name, processor)`` to count with: ``AutoProcessor`` of ``path`` (a processor or
    model directory, or a Hub id), else the byte-level upper bound."""
    if path:
        from transformers import AutoProcessor

        return path, AutoProcessor.from_pretrained(path)
    from ..model.tiny import build_tiny_processor

    return "byte-level (upper bound; pass --tokenizer for exact counts)", build_tiny_processor()


def _render(prompt: list[dict], completion: list[dict], processor) -> dict:
    """``{"prompt": text, "completion": text}`` as TRL's collator renders one example."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    example = {"prompt": prepare_multimodal_messages(prompt, images=[None]), "completion": prepare_multimodal_messages(completion)}
    return apply_chat_template(example, processor)


_SENTINEL = "\x00answer\x00"


class _PromptTexts:
    """One prompt's rendering, kept for every row asking it: its text, and the completion's
    text around the answer (checked on the first row: a template whose wrapping depends on
    the answer is rendered row by row instead)."""

    def __init__(self, row: dict, processor):
        answer = row["completion"][0]["content"]
        probe = _render(row["prompt"], [{"role": "assistant", "content": _SENTINEL}], processor)
        before, _, after = probe["completion"].partition(_SENTINEL)
        actual = _render(row["prompt"], row["completion"], processor)
        self.prompt = actual["prompt"]
        self.wrap = (before, after) if actual["completion"] == before + answer + after and len(row["completion"]) == 1 else None

    def completion(self, row: dict, processor) -> str:
        if self.wrap is None:
            return _render(row["prompt"], row["completion"], processor)["completion"]
        return self.wrap[0] + row["completion"][0]["content"] + self.wrap[1]


def _image_tokens(row: dict, sizes: dict, min_pixels: int, max_pixels: int, patch: int, merge: int) -> int:
    """The row's image (or tile) tokens; an image whose header cannot be read (unchecked
    data) counts as the most tokens ``max_pixels`` allows."""
    crop = row.get("crop")
    if crop is not None:
        return image_tokens(crop[2] - crop[0], crop[3] - crop[1], min_pixels, max_pixels, patch, merge)
    if row["image"] not in sizes:
        try:
            sizes[row["image"]] = image_size(row["image"])
        except IMAGE_ERRORS:
            sizes[row["image"]] = None
    size = sizes[row["image"]]
    return max_pixels // (patch * merge) ** 2 if size is None else image_tokens(*size, min_pixels, max_pixels, patch, merge)


def example_lengths(rows: list[dict], processor, min_pixels: int, max_pixels: int) -> np.ndarray:
    """``(R,)`` tokens of each row (prompt with its image's tokens + answer + end of turn).

    Args:
        rows: rows of :func:`trl_ground.data.dataset.build_examples` (``image`` a path, ``crop`` for a tile).
        processor: a processor or tokenizer with a chat template.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    image_processor = getattr(processor, "image_processor", None)
    patch = getattr(image_processor, "patch_size", None) or PATCH_SIZE
    merge = getattr(image_processor, "merge_size", None) or MERGE_SIZE
    count = lambda texts: np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]], dtype=np.int64)  # noqa: E731
    prompts: dict[str, _PromptTexts] = {}
    prompt_keys, completions, visual = [], [], []
    sizes: dict[str, tuple[int, int]] = {}
    for row in rows:
        key = json.dumps(row["prompt"], sort_keys=True)
        if key not in prompts:
            prompts[key] = _PromptTexts(row, processor)
        prompt_keys.append(key)
        completions.append(prompts[key].completion(row, processor))
        visual.append(_image_tokens(row, sizes, min_pixels, max_pixels, patch, merge))
    prompt_tokens = dict(zip(prompts, count([p.prompt for p in prompts.values()]))) if prompts else {}
    # the prompt's one <|image_pad|> stands for the image's tokens
    text = np.array([prompt_tokens[k] for k in prompt_keys], dtype=np.int64) - 1
    return text + np.array(visual, dtype=np.int64) + (count(completions) if completions else 0)


def _where(row: dict, source) -> str:
    tile = f" tile {tuple(row['crop'])}" if row.get("crop") is not None else ""
    return f"record {row['record']} ({row['image_id']}{tile}, '{row['class']}', {len(row['gt_boxes'])} boxes)"


def too_long_message(rows: list[dict], lengths: np.ndarray, max_length: int | None, source) -> str | None:
    """One line naming the rows longer than ``max_length`` (the first few, longest first),
    or None when every row fits (or there is no limit)."""
    if not max_length:
        return None
    over = np.flatnonzero(lengths > max_length)
    if not len(over):
        return None
    over = over[np.argsort(-lengths[over], kind="stable")]
    named = "; ".join(f"{_where(rows[i], source)}: {int(lengths[i]):,} tokens" for i in over[:_NAMED])
    more = f" and {len(over) - _NAMED} more" if len(over) > _NAMED else ""
    return (
        f"{source}: {len(over)} of {len(rows)} examples are longer than max_length {max_length:,} tokens, so training "
        f"would cut their answers (their last boxes unlearned): {named}{more}. Tile the images (--tile-size / "
        "--tile-overlap, or trl-ground-convert-data --tile) or raise --max-length"
    )


def warn_if_too_long(dataset, processor, data_args, max_length: int | None, source) -> np.ndarray | None:
    """At training start: warn (``logging``) when examples of ``dataset`` (a
    :func:`trl_ground.data.dataset.build_dataset` dataset with its answers) pass ``max_length``.
    Returns the lengths, or None when there is nothing to check."""
    if not max_length or "completion" not in dataset.column_names:
        return None
    rows = dataset.with_format(None).to_list()
    lengths = example_lengths(rows, processor, data_args.min_pixels, data_args.max_pixels)
    message = too_long_message(rows, lengths, max_length, source)
    if message:
        logger.warning("%s", message)
    return lengths
