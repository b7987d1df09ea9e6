"""The summary printed by ``scripts/check_data.py``: what training will see."""

from __future__ import annotations

import logging
import time
from collections import Counter

from ..config.data import DataArguments
from ..data.dataset import build_examples, no_examples_reason, tile_if_asked
from ..data.records import load_records
from .lengths import counting_processor, example_lengths, too_long_message

__all__ = ["summarize"]

logger = logging.getLogger(__name__)


def summarize(
    train_json,
    img_root,
    prompt_mode: str = "primary",
    add_negatives: bool = False,
    on_bad_record: str = "error",
    tokenizer=None,
    check_images: bool = True,
    max_length: int | None = None,
    **data_options,
) -> str:
    """Validate ``train_json`` as training would (every image opened unless
    ``check_images`` is False) and describe it. ``data_options`` are further
    :class:`~trl_ground.config.DataArguments` fields (``max_pixels``, ``tile_size`` ...).

    Every example is measured in tokens as training builds it (:mod:`trl_ground.train.lengths`,
    with ``tokenizer``'s processor or the byte-level upper bound); those longer than
    ``max_length`` (None: no check) are named in a warning (``logging``), since training would cut them.

    Raises:
        ValueError naming the file, record and field of the first bad record (with
        ``on_bad_record="error"``), or when no training example can be built.
    """
    start = time.perf_counter()
    records, skipped = load_records(train_json, img_root, on_bad_record=on_bad_record, check_images=check_images)
    seconds = time.perf_counter() - start
    args = DataArguments(prompt_mode=prompt_mode, add_negatives=add_negatives, on_bad_record=on_bad_record, **data_options)
    images, valid = len({r.image_path for r in records}), len(records)
    records = tile_if_asked(records, args, train_json)
    rows = build_examples(records, args)
    if not rows:
        raise ValueError(no_examples_reason(train_json, records, args))
    per_class = Counter(o.cls for r in records for o in r.objects)
    per_image = Counter(len(r.objects) for r in records)
    name, processor = counting_processor(tokenizer)
    lengths = example_lengths(rows, processor, args.min_pixels, args.max_pixels)
    longest = int(lengths.argmax())
    tiles = f", cut into {len(records)} tiles of {args.tile_size} px holding boxes" if args.tile_size else ""
    unit = "tile" if args.tile_size else "image"
    lines = [
        f"file: {train_json}",
        f"records: {valid} valid{tiles}" + (f", {len(skipped)} skipped" if skipped else ""),
        f"images found: {images}"
        + (f" (all opened and decoded, {seconds:.1f} s)" if check_images else " (not opened: --no-image-check)"),
        f"examples ({prompt_mode}{', with negatives' if add_negatives else ''}): {len(rows)}",
        "boxes per class:",
        *(f"  {cls:<20} {n}" for cls, n in per_class.most_common()),
        f"boxes per {unit} (histogram):",
        *(f"  {k:>3} boxes: {per_image[k]} {unit}(s)" for k in sorted(per_image)),
    ]
    row = rows[longest]
    lines.append(f"longest example: {int(lengths[longest]):,} tokens, prompt and image included (record {row['record']}, "
                 f"{len(row['gt_boxes'])} boxes; tokenizer: {name})")
    too_long = too_long_message(rows, lengths, max_length, train_json)
    if too_long:
        lines.append(f"longer than max_length {max_length:,}: {int((lengths > max_length).sum())} examples (named in the warning)")
        logger.warning("%s", too_long)
    if skipped:
        lines.append("first skipped: " + "; ".join(skipped[:3]))
    return "\n".join(lines)
