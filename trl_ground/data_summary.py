"""The summary printed by ``scripts/check_data.py``: what training will see."""

from __future__ import annotations

import time
from collections import Counter

from .config.data import DataArguments
from .data import build_examples, no_examples_reason
from .records import load_records

__all__ = ["summarize"]


def _token_counter(tokenizer_path: str | None):
    """``(name, fn(text) -> int)``: the given tokenizer, else the project's byte-level one."""
    if tokenizer_path:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_path)
        return tokenizer_path, lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
    # The tiny model's tokenizer has one token per byte: an upper bound for Qwen's, which
    # also writes every digit as its own token.
    return "byte-level (upper bound; pass --tokenizer for exact counts)", lambda text: len(text.encode("utf-8"))


def summarize(
    train_json,
    img_root,
    prompt_mode: str = "primary",
    add_negatives: bool = False,
    on_bad_record: str = "error",
    tokenizer=None,
    check_images: bool = True,
) -> str:
    """Validate ``train_json`` as training would (every image opened unless
    ``check_images`` is False) and describe it.

    Raises:
        ValueError naming the file, record and field of the first bad record (with
        ``on_bad_record="error"``), or when no training example can be built.
    """
    start = time.perf_counter()
    records, skipped = load_records(train_json, img_root, on_bad_record=on_bad_record, check_images=check_images)
    seconds = time.perf_counter() - start
    args = DataArguments(prompt_mode=prompt_mode, add_negatives=add_negatives, on_bad_record=on_bad_record)
    rows = build_examples(records, args)
    if not rows:
        raise ValueError(no_examples_reason(train_json, records, args))
    per_class = Counter(o.cls for r in records for o in r.objects)
    per_image = Counter(len(r.objects) for r in records)
    name, count = _token_counter(tokenizer)
    longest = max(rows, key=lambda r: len(r["completion"][0]["content"]), default=None)
    lines = [
        f"file: {train_json}",
        f"records: {len(records)} valid" + (f", {len(skipped)} skipped" if skipped else ""),
        f"images found: {len({r.image_path for r in records})}"
        + (f" (all opened and decoded, {seconds:.1f} s)" if check_images else " (not opened: --no-image-check)"),
        f"examples ({prompt_mode}{', with negatives' if add_negatives else ''}): {len(rows)}",
        "boxes per class:",
        *(f"  {cls:<20} {n}" for cls, n in per_class.most_common()),
        "boxes per image (histogram):",
        *(f"  {k:>3} boxes: {per_image[k]} image(s)" for k in sorted(per_image)),
    ]
    if longest is not None:
        answer = longest["completion"][0]["content"]
        lines.append(f"longest target answer: {count(answer)} tokens ({len(longest['gt_boxes'])} boxes; tokenizer: {name})")
    if skipped:
        lines.append("first skipped: " + "; ".join(skipped[:3]))
    return "\n".join(lines)
