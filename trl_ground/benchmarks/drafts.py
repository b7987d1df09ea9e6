"""How much ground-truth drafts could save on a model that writes the format (CPU).

    trl-ground-bench-drafts --warm-from benchmarks/warm_start --out benchmarks/drafts_warm.json

On the learning benchmark's committed warm start (a small Qwen3-VL trained here, test
F1@0.5 0.50) and fresh synthetic scenes drawn like its training data, with the benchmark's
prompts:

- ``skeleton``: teacher-forced on the target answers, how much probability the model leaves
  off the tokens the JSON format forces (``[{"bbox_2d": [``, ``, ``, ``], "label": "``, ...:
  tokens without a digit or a letter of a label), against the other tokens (coordinates,
  labels); this bounds what appending the skeleton without a decode step (jump-forward)
  could save and what it would distort;
- ``speculative``: :func:`trl_ground.sampling.speculative.speculative_sample` at temperature 1 with
  the target answers as drafts, for each ``--blocks``: acceptance rate, answer tokens per
  decode step (plain decoding: 1), decode steps per answer, and the CPU wall-clock against
  the plain static sampler on the same prompts (eager on both; a GPU's step costs differ).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from trl_ground.benchmarks import benchmark_command

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SKELETON_CHARS = set('[]{}",: _')


def is_skeleton(text: str) -> bool:
    """A token the answer format forces: JSON punctuation and the keys (no digit, no label),
    or the end of the answer."""
    if text in ("<|im_end|>", "<|endoftext|>"):
        return True
    stripped = text.replace("bbox_2d", "").replace("label", "")
    return bool(text) and set(stripped) <= SKELETON_CHARS


def prompts_and_targets(model_dir: Path, settings: dict, n: int, seed: int):
    """``n`` fresh scenes like the warm start's data -> (processor, SFT batch, prompts,
    target answer token ids per prompt)."""
    from trl_ground.config import DataArguments
    from trl_ground.data.collator import GroundingCollator
    from trl_ground.data.dataset import ImageLoader, build_examples
    from trl_ground.data.records import load_records
    from trl_ground.data.synthetic import make_synthetic_dataset
    from trl_ground.model.loading import load_processor
    from trl_ground.sampling.batches import prompts_from_sft_batch

    size = settings["image_size"]
    train, _, root = make_synthetic_dataset(Path(tempfile.mkdtemp()), n=n, seed=seed, test_fraction=0.0, size=size,
                                            max_objects=settings["max_objects"])
    args = DataArguments(max_pixels=size * size, system_prompt=settings["system_prompt"], query_template=settings["query_template"])
    rows = [r for r in build_examples(load_records(train, root)[0], args) if r["gt_boxes"]][:n]
    from datasets import Dataset

    dataset = Dataset.from_list(rows)
    dataset.set_transform(ImageLoader(args.min_pixels, args.max_pixels))
    processor = load_processor(str(model_dir), size * size)
    batch = GroundingCollator(processor)([dataset[i] for i in range(len(dataset))])
    pad = processor.tokenizer.pad_token_id
    targets = [row[lab != -100].tolist() for row, lab in zip(batch["input_ids"], batch["labels"])]
    return processor, batch, prompts_from_sft_batch(batch, pad), targets


def skeleton_mass(model, batch, tokenizer) -> dict:
    """Teacher-forced probability of each target token, split into format and content tokens."""
    import torch

    inputs = {k: v for k, v in batch.items() if k not in ("labels", "gt_boxes", "query_class")}
    with torch.no_grad():
        logits = model(**inputs).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    p = torch.softmax(logits, dim=-1).gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)[mask]
    skel = torch.tensor([is_skeleton(tokenizer.decode([i])) for i in labels[mask].tolist()])
    out = {}
    for name, sel in (("skeleton", skel), ("content", ~skel)):
        q = p[sel]
        out[name] = {"tokens": int(sel.sum()), "share_of_answer_tokens": round(float(sel.float().mean()), 4),
                     "mean_probability_left_off": round(float((1 - q).mean()), 5),
                     "fraction_above_0.99": round(float((q > 0.99).float().mean()), 4)}
    return out


def run(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm-from", default="benchmarks/warm_start", help="the learning benchmark's warm start (model dir or tar parts)")
    ap.add_argument("--prompts", type=int, default=48, help="scenes drawn (those with objects are asked: 42 of 48 at the default seed)")
    ap.add_argument("--blocks", type=int, nargs="+", default=[4, 8], help="draft lengths to measure (default: 4 8)")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    ap.add_argument("--max-new-tokens", type=int, default=160, help="token limit of an answer (default: 160)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the scenes and of the sampling (default: 7)")
    ap.add_argument("--out", default="benchmarks/drafts_warm.json", help="result JSON (default: the committed one)")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForImageTextToText

    from trl_ground.benchmarks.warm_start import unpack_warm
    from trl_ground.sampling.speculative import speculative_sample
    from trl_ground.sampling.static import StaticSampler

    model_dir = unpack_warm(Path(args.warm_from), Path(tempfile.mkdtemp()))
    settings = json.loads((model_dir / "warm_start.json").read_text())["settings"]
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor, batch, prompts, targets = prompts_and_targets(model_dir, settings, args.prompts, args.seed)
    tok = processor.tokenizer
    result = {
        "date": time.strftime("%Y-%m-%d"), "hardware": "CPU", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "settings": {**vars(args), "prompts_with_objects": len(targets), "target_tokens_mean": round(sum(map(len, targets)) / len(targets), 1)},
        "skeleton": skeleton_mass(model, batch, tok),
    }
    common = dict(k=1, temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    plain = StaticSampler().sample(model, prompts, tok, **common)
    plain_s = time.perf_counter() - start
    plain_tokens = int(plain.completion_mask.sum())
    result["plain"] = {"seconds": round(plain_s, 2), "answer_tokens": plain_tokens,
                       "decode_steps": int(plain.completion_mask.sum(dim=1).max()) - 1}
    result["speculative"] = {}
    for block in args.blocks:
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        samples, stats = speculative_sample(model, prompts, tok, targets, block=block, **common)
        seconds = time.perf_counter() - start
        result["speculative"][f"block_{block}"] = {
            "acceptance": round(stats.acceptance, 4), "tokens_per_decode_step": round(stats.tokens_per_step, 3),
            "decode_steps": stats.decode_steps, "answer_tokens": int(samples.completion_mask.sum()),
            "seconds": round(seconds, 2), "plain_over_speculative_seconds": round(plain_s / seconds, 2),
            "mean_answer_tokens_plain_vs_this": [round(plain_tokens / len(targets), 1), round(float(samples.completion_mask.sum()) / len(targets), 1)],
        }
        print(f"block {block}: acceptance {stats.acceptance:.3f}, {stats.tokens_per_step:.2f} tokens/step, {seconds:.1f} s (plain {plain_s:.1f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["skeleton"], indent=1))
    return result


main = benchmark_command(run, scratch=True)


if __name__ == "__main__":
    sys.exit(main())
