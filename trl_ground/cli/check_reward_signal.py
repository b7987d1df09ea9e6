"""Is there a learning signal for the grounding loss? Sample K answers per prompt from a
model and report, per cost variant, how much they differ and whether ``[]`` is the
cheapest answer (see ``trl_ground/loss/reward_signal.py``).

    trl-ground-check-signal --model runs/sft/final_merged --test-json data/test.json --img-root data \\
        --add-negatives --k 4 --temperature 0.7 1.0 --out signal.json

Run it on your SFT model before turning on the hybrid loss or GRPO: ``zero_spread_fraction``
near 1 means the K answers of a prompt nearly always cost the same (no gradient; more
samples or a higher temperature help); ``positives.empty_wins`` high with
``advantage_empty < 0`` means the loss will teach the model to answer ``[]``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .common import ArgumentParser, add_model_options, add_prompt_options, command, prompt_words

# The table's columns: the report's JSON keys (positives.* are nested), and their widths.
_COLUMNS = [("temperature", 11), ("variant", 19), ("mean_group_std", 14), ("zero_spread_fraction", 20),
            ("positives.empty_fraction", 24), ("positives.cost_empty", 20), ("positives.cost_boxes", 20),
            ("positives.advantage_empty", 25), ("positives.empty_wins", 20)]


def parse_args(argv=None):
    ap = ArgumentParser(prog="trl-ground-check-signal", description=__doc__)
    add_model_options(ap)
    ap.add_argument("--test-json", "--test_json", required=True, help="JSON in the training format")
    ap.add_argument("--img-root", "--img_root", help="image root (default: the JSON's folder)")
    ap.add_argument("--add-negatives", action="store_true", help="also ask about an absent class per image")
    ap.add_argument("--limit", type=int, default=200, help="first N prompts")
    ap.add_argument("--k", type=int, default=4, help="answers sampled per prompt")
    ap.add_argument("--temperature", type=float, nargs="+", default=[1.0], help="one report per temperature")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="token limit of a sampled answer")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    ap.add_argument("--max-pixels", type=int, default=448 * 448, help="images are resized to at most this many pixels")
    add_prompt_options(ap)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--out", help="write the reports as JSON")
    return ap.parse_args(argv)


def sample_texts(
    model, processor, items, k: int, temperature: float, max_new_tokens: int, batch_size: int, max_pixels: int, system_prompt: str
) -> list[str]:
    """``len(items) * k`` sampled answers, the K of an item consecutive (with a progress bar)."""
    from tqdm.auto import tqdm

    from trl_ground.data.dataset import ImageLoader
    from trl_ground.inference.predict import prompt_batch
    from trl_ground.sampling.generation import sample_answers

    loader = ImageLoader(32 * 32, max_pixels)
    device = next(model.parameters()).device
    texts = []
    with tqdm(total=len(items), desc=f"sampling {k} answers per prompt at T={temperature}", unit="prompt") as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            prompts = prompt_batch(processor, chunk, [loader.load(i.image_path) for i in chunk], system_prompt, device)
            texts += sample_answers(model, prompts, processor.tokenizer, k=k, temperature=temperature, max_new_tokens=max_new_tokens).texts
            bar.update(len(chunk))
    return texts


@command
def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from trl_ground.config import DataArguments
    from trl_ground.data.dataset import build_examples
    from trl_ground.data.records import load_records
    from trl_ground.inference.predict import items_from_examples, load_for_inference
    from trl_ground.loss.reward_signal import DEFAULT_VARIANTS, conclusion, signal_report
    from trl_ground.model.source import resolve_model_source

    torch.manual_seed(args.seed)
    root = args.img_root or str(Path(args.test_json).parent)
    records, _ = load_records(args.test_json, root)
    data_args = DataArguments(add_negatives=args.add_negatives, **prompt_words(args))
    rows = build_examples(records, data_args)[: args.limit]
    items, gts = items_from_examples(rows), [r["gt_boxes"] for r in rows]
    source = resolve_model_source(args.model, args.adapter, args.base_model)
    print(f"{len(items)} prompts from {args.test_json}; loading {args.model}", flush=True)
    model, processor = load_for_inference(source.base, source.adapter)
    reports = []
    for temperature in args.temperature:
        texts = sample_texts(
            model, processor, items, args.k, temperature, args.max_new_tokens, args.batch_size, args.max_pixels, data_args.system_prompt
        )
        for name, settings in DEFAULT_VARIANTS.items():
            reports.append({"temperature": temperature, "k": args.k, **signal_report(texts, gts, args.k, settings, name)})
    _print_table(reports)
    print()
    print(conclusion(reports))
    if args.out:
        Path(args.out).write_text(json.dumps(reports, indent=1) + "\n")
        print(f"reports -> {args.out}")
    return 0


def _cell(report: dict, key: str):
    value = report
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _print_table(reports: list[dict]) -> None:
    """One row per report; the column headers are the JSON keys (``positives.*``: prompts with boxes)."""
    print(" ".join(f"{key:>{width}}" if i != 1 else f"{key:<{width}}" for i, (key, width) in enumerate(_COLUMNS)))
    for r in reports:
        cells = []
        for i, (key, width) in enumerate(_COLUMNS):
            value = _cell(r, key)
            text = "-" if value is None else format(value, ".3f") if isinstance(value, float) and key != "temperature" else str(value)
            cells.append(f"{text:<{width}}" if i == 1 else f"{text:>{width}}")
        print(" ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
