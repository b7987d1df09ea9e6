"""Predict boxes on new images with a trained model, with a confidence per box.

Prompts are the training prompts (:mod:`trl_ground.data.dataset`). Answers are greedy, batched,
with the KV cache, and parsed by :func:`rewards.parse_boxes`.

**Confidence of a box**: the geometric mean of the probabilities the model gave to the
tokens of its four coordinates, ``exp(mean log p)`` over the digit tokens inside that box's
``[x1, y1, x2, y2]`` (Qwen writes one token per digit). It lies in [0, 1]; a box the model
wrote hesitantly scores low. When the answer's boxes cannot be located in the text (an old
or broken format), each box gets the answer's mean token probability instead.

**Images that cannot be read** (truncated, corrupt, not an image) are skipped:
:func:`iter_predictions` yields an ``{"error": ...}`` entry for each, :func:`predict` logs a
warning and leaves them out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rewards import parse_boxes
from rewards.layout import answer_layout

from ..data.dataset import ImageLoader
from ..data.images import IMAGE_ERRORS, open_rgb
from ..data.prompts import DEFAULT_QUERY, DEFAULT_SYSTEM_PROMPT, grounding_prompt
from ..model.source import check_model_source
from ..sampling.batches import PromptBatch
from ..sampling.generation import generate_with_logprobs

__all__ = [
    "PredictionItem",
    "box_confidences",
    "check_model_source",
    "items_from_examples",
    "items_from_folder",
    "iter_predictions",
    "load_for_inference",
    "predict",
]

logger = logging.getLogger(__name__)

_BOX_SPAN = re.compile(r'"(?:bbox_2d|bbox|box)"\s*:\s*\[([^\]]*)\]')
_DIGITS = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class PredictionItem:
    """One query: an image file and what to ask about it (plus what the output should carry).

    ``crop``: ask about this pixel window ``(x0, y0, x1, y1)`` of the image only (a tile,
    :mod:`trl_ground.inference.sliced_predict`); the answer's boxes are then the window's. None: the whole image."""

    image_path: str
    cls: str
    query: str
    meta: dict
    crop: tuple | None = None


def load_for_inference(model_dir: str, adapter: str | None = None, load_in_4bit: bool = False):
    """``(model, processor)`` in eval mode: a merged / full model directory, or a base with
    LoRA adapters (``adapter``), optionally loaded in 4-bit NF4 (CUDA).

    Raises ``ValueError`` (see :func:`check_model_source`) before loading anything when a
    directory is missing."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    from ..model.loading import check_4bit_device, compute_dtype

    check_model_source(model_dir)
    if adapter:
        check_model_source(adapter, "adapter", "adapter_config.json")

    kwargs = {"dtype": compute_dtype()}
    if load_in_4bit:
        check_4bit_device("--load-in-4bit", "leave it out to load the model in 16 bits, or run on a GPU")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForImageTextToText.from_pretrained(model_dir, **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    if torch.cuda.is_available() and not load_in_4bit:
        model = model.to("cuda")
    # a run's final/ and checkpoints hold the processor; other adapter folders may not
    processor = AutoProcessor.from_pretrained(adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else model_dir)
    processor.tokenizer.padding_side = "left"
    return model.eval(), processor


def box_confidences(tokens: list[str], logprobs: np.ndarray, text: str, n_boxes: int) -> np.ndarray:
    """``(n_boxes,)`` confidences in [0, 1] (see the module docstring).

    Args:
        tokens: the decoded text of each generated token (concatenating to ``text``).
        logprobs: ``(T,)`` log-probability of each generated token.
        text: the answer. n_boxes: how many boxes the parser recovered from it.
    """
    if n_boxes == 0:
        return np.zeros(0)
    fallback = float(np.exp(np.mean(logprobs))) if len(logprobs) else 0.0
    starts = np.cumsum([0] + [len(t) for t in tokens])  # character offset of each token
    layout = answer_layout(text)  # where each box object is: the same scan as box-level credit's
    spans = []
    for start, end in layout.objects if layout is not None else ():
        m = _BOX_SPAN.search(text, start, end)
        digits = [(m.start(1) + d.start(), m.start(1) + d.end()) for d in _DIGITS.finditer(m.group(1))] if m else []
        if len(digits) == 4:
            spans.append(digits)
    if len(spans) != n_boxes or "".join(tokens) != text:
        return np.full(n_boxes, fallback)
    out = []
    for digits in spans:
        chosen = set()
        for a, b in digits:
            first = int(np.searchsorted(starts, a, side="right")) - 1
            last = int(np.searchsorted(starts, b, side="left")) - 1
            chosen.update(range(first, last + 1))
        out.append(float(np.exp(np.mean(logprobs[sorted(chosen)]))))
    return np.clip(np.array(out), 0.0, 1.0)


def prompt_batch(processor, items: list[PredictionItem], images: list, system_prompt: str, device) -> PromptBatch:
    """The left-padded generation prompts (chat template + image) of ``items``, on ``device``."""
    from trl.data_utils import prepare_multimodal_messages

    texts = []
    for item, image in zip(items, images):
        messages = prepare_multimodal_messages(grounding_prompt(item.query, system_prompt), images=[image])
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    enc = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False)
    enc = {k: v.to(device) for k, v in enc.items()}
    return PromptBatch(enc["input_ids"], enc["attention_mask"], enc.get("pixel_values"), enc.get("image_grid_thw"), enc.get("mm_token_type_ids"))


def iter_predictions(
    model,
    processor,
    items: list[PredictionItem],
    batch_size: int = 8,
    max_new_tokens: int = 512,
    max_pixels: int = 448 * 448,
    min_pixels: int = 32 * 32,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    progress: bool = True,
) -> Iterator[dict]:
    """Answer every item, batch by batch; yields one dict per item: its answer (see
    ``scripts/predict_bbox.py``; answers come in item order) or, as soon as its image fails
    to load, ``{**meta, "image_path", "class", "error": reason}``."""
    tokenizer = processor.tokenizer
    loader = ImageLoader(min_pixels, max_pixels)
    device = next(model.parameters()).device
    batches = range(0, len(items), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="predicting", unit="batch")
    opened = (None, None)  # the last image: the tiles of one image follow each other
    for start in batches:
        chunk, images, sizes = [], [], []
        for item in items[start : start + batch_size]:
            try:
                if opened[0] != item.image_path:
                    opened = (item.image_path, open_rgb(item.image_path))
                img = opened[1] if item.crop is None else opened[1].crop(tuple(item.crop))
            except IMAGE_ERRORS as err:
                opened = (None, None)
                yield {**item.meta, "image_path": item.image_path, "class": item.cls, "error": f"{type(err).__name__}: {err}"}
                continue
            chunk.append(item)
            sizes.append(img.size)
            images.append(loader.resize(img))
        if not chunk:
            continue
        prompts = prompt_batch(processor, chunk, images, system_prompt, device)
        ids, mask, truncated, logprobs = generate_with_logprobs(model, prompts, tokenizer, max_new_tokens)
        for row, item in enumerate(chunk):
            n = int(mask[row].sum())
            token_ids = ids[row, :n].tolist()
            # the answer's text without the end token, token by token (for the confidences)
            keep = [i for i, t in enumerate(token_ids) if t not in tokenizer.all_special_ids]
            pieces = [tokenizer.decode([token_ids[i]]) for i in keep]
            text = "".join(pieces)
            parsed = parse_boxes(text)
            conf = box_confidences(pieces, logprobs[row, keep].cpu().numpy(), text, len(parsed.boxes))
            width, height = sizes[row]
            scale = np.array([width, height, width, height], dtype=np.float64)
            yield {
                **item.meta,
                "image_path": item.image_path,
                "width": width,
                "height": height,
                "class": item.cls,
                "query": item.query,
                "answer": text,
                "valid_json": parsed.valid_json,
                "truncated": bool(truncated[row]),
                "num_tokens": n,
                "boxes": np.round(parsed.boxes, 6).tolist(),
                "boxes_px": np.round(parsed.boxes * scale, 2).tolist(),
                "labels": list(parsed.labels),
                "scores": np.round(conf, 6).tolist(),
            }


def predict(
    model,
    processor,
    items: list[PredictionItem],
    batch_size: int = 8,
    max_new_tokens: int = 512,
    max_pixels: int = 448 * 448,
    min_pixels: int = 32 * 32,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    progress: bool = True,
) -> list[dict]:
    """The answers of :func:`iter_predictions` (same arguments) as a list; items whose image
    cannot be read are left out, each with a warning."""
    results = []
    stream = iter_predictions(model, processor, items, batch_size, max_new_tokens, max_pixels, min_pixels, system_prompt, progress)
    for result in stream:
        if "error" in result:
            logger.warning("skipped %s: %s", result["image_path"], result["error"])
        else:
            results.append(result)
    return results


def items_from_folder(root, cls: str = "object", query: str | None = None) -> list[PredictionItem]:
    """Every image file under ``root`` (sorted), asked about ``cls`` (or a custom ``query``)."""
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in exts)
    if not paths:
        raise ValueError(f"{root}: no images found")
    q = query or DEFAULT_QUERY.replace("{class}", cls)
    return [PredictionItem(str(p), cls, q, {"image": p.name}) for p in paths]


def items_from_examples(rows: list[dict]) -> list[PredictionItem]:
    """Items for rows of :func:`trl_ground.data.dataset.build_examples` (same prompts as training)."""
    keep = ("image_id", "record", "mode", "is_unique")
    return [
        PredictionItem(r["image"], r["class"], r["prompt"][-1]["content"], {"image": r["image_id"], **{k: r[k] for k in keep[1:]}})
        for r in rows
    ]
