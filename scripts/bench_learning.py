"""Does the grounding loss help? SFT vs seed-literal vs hybrid vs GRPO, trained here.

    python scripts/bench_learning.py --out benchmarks/learning.json          # the real run (CUDA GPU)
    python scripts/bench_learning.py --quick --out /tmp/learning.json       # a few steps on a CPU

A small Qwen3-VL (random init, the project's byte tokenizer) learns the synthetic grounding
task (primary prompts plus negatives). A shared warm start of plain SFT (full fine-tuning)
comes first; from it, each branch trains the same number of steps on the same data order:

1. ``sft``: LM loss only;  2. ``literal``: LM + grounding terms as constants
(``grounding_gradient: none``);  3. ``hybrid``: LM + the policy-gradient surrogate;
4. ``grpo``: TRL's GRPOTrainer with the grounding + format rewards;  plus ``hybrid_lora``
once (LoRA on the warm start). Every branch runs for each ``--seeds``; each is evaluated on
the held-out test set every ``--eval-every`` steps (greedy answers, ``scripts/eval_bbox.py``'s
metrics). Writes the JSON (per branch and seed: metrics, F1 curve, wall-clock, settings) and
a plot of F1 vs steps next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BRANCHES = ("sft", "literal", "hybrid", "grpo")


def _settings(quick: bool) -> dict:
    if quick:
        return dict(n_images=30, image_size=64, hidden=64, layers=2, vision_hidden=32, vision_depth=2, warm_steps=2,
                    branch_steps=2, eval_every=2, batch=4, seeds=[0], max_new_tokens=24, samples_per_prompt=2, test_limit=6)
    return dict(n_images=3000, image_size=128, hidden=384, layers=6, vision_hidden=192, vision_depth=4, warm_steps=1500,
                branch_steps=600, eval_every=100, batch=16, seeds=[0, 1], max_new_tokens=160, samples_per_prompt=4, test_limit=200)


def _common_argv(model, data, out, s, seed) -> list[str]:
    return [
        "--model", str(model), "--train-json", str(data / "train.json"), "--img-root", str(data), "--add-negatives", "true",
        "--max-pixels", str(s["image_size"] ** 2), "--output-dir", str(out), "--batch-size", str(s["batch"]),
        "--gradient-accumulation-steps", "1", "--logging-steps", "10", "--save-strategy", "no", "--report-to", "none",
        "--seed", str(seed), "--gradient-checkpointing", "false", "--no-use-lora", "--no-load-in-4bit", "--lr", "0.0005",
        "--dataloader-num-workers", "0",
    ]


class _F1Curve:
    """Evaluate the model on the test items every ``every`` steps (greedy answers)."""

    def __init__(self, items, test_json, every, max_new_tokens, max_pixels):
        from transformers import TrainerCallback

        outer = self
        self.items, self.test_json, self.every = items, test_json, every
        self.max_new_tokens, self.max_pixels = max_new_tokens, max_pixels
        self.curve: list[tuple[int, float]] = []
        self.last: dict = {}

        class Callback(TrainerCallback):
            def __init__(self):
                self.trainer = None

            def on_step_end(self, args, state, control, **kw):
                if state.global_step % outer.every == 0 or state.global_step == state.max_steps:
                    outer.measure(self.trainer, state.global_step)

        self.callback = Callback()

    def measure(self, trainer, step: int) -> dict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        self.last = evaluate_model(model, trainer.processing_class, self.items, self.test_json, self.max_new_tokens, self.max_pixels)
        self.curve.append((step, self.last["f1"]))
        print(f"  step {step}: F1@0.5 {self.last['f1']:.3f}", flush=True)
        return self.last


def evaluate_model(model, processor, items, test_json, max_new_tokens, max_pixels) -> dict:
    """predict -> the evaluation report, on the test items."""
    from trl_ground.evaluate import evaluate
    from trl_ground.predict import predict

    was_training = model.training
    outputs = predict(model, processor, items, batch_size=16, max_new_tokens=max_new_tokens, max_pixels=max_pixels, progress=False)
    model.train(was_training)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(outputs, f)
    metrics = evaluate(f.name, test_json)
    os.unlink(f.name)
    keep = ("precision", "recall", "f1", "mean_iou", "ap50")
    return {**{k: metrics[k] for k in keep}, "unparseable_fraction": metrics["counts"]["unparseable_answers"] / max(len(items), 1)}


def _train(kind: str, argv: list[str], curve: _F1Curve) -> tuple[object, float]:
    from trl_ground.config import parse_sft_args

    if kind == "grpo":
        from trl_ground.grpo import GroundingGRPOConfig, build_grpo_trainer

        trainer = build_grpo_trainer(*parse_sft_args(argv, config_class=GroundingGRPOConfig))
    else:
        from trl_ground.train import build_trainer

        trainer = build_trainer(*parse_sft_args(argv))
    curve.callback.trainer = trainer
    trainer.add_callback(curve.callback)
    start = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - start


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/learning.json")
    ap.add_argument("--quick", action="store_true", help="tiny CPU run (the tests use it)")
    ap.add_argument("--work-dir", help="where data and models go (default: a temporary folder)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (JSON value), e.g. --set warm_steps=500")
    args = ap.parse_args(argv)
    import torch

    from trl_ground.data import DataArguments, build_examples
    from trl_ground.predict import items_from_examples
    from trl_ground.records import load_records
    from trl_ground.synthetic import make_synthetic_dataset
    from trl_ground.tiny import build_tiny_qwen3vl

    s = _settings(args.quick)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in s:
            raise SystemExit(f"unknown setting {key!r}; settings: {sorted(s)}")
        s[key] = json.loads(value)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_learning_"))
    data = work / "data"
    make_synthetic_dataset(data, n=s["n_images"], seed=1234, test_fraction=0.1, size=s["image_size"], max_objects=6)
    test_records, _ = load_records(data / "test.json", data)
    test_rows = build_examples(test_records, DataArguments(add_negatives=True))[: s["test_limit"]]
    items = items_from_examples(test_rows)
    subset = data / "test_subset.json"
    keep = {r["image_id"] for r in test_rows}
    subset.write_text(json.dumps([r for r in json.loads((data / "test.json").read_text()) if r["image"] in keep]))
    base = build_tiny_qwen3vl(work / "init", seed=0, hidden=s["hidden"], layers=s["layers"], image_size=s["image_size"] ** 2,
                              vision_hidden=s["vision_hidden"], vision_depth=s["vision_depth"])
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "quick": args.quick,
        "settings": s,
        "branches": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out.write_text(json.dumps(result, indent=2) + "\n")

    new_tokens = ["--sample-max-new-tokens", str(s["max_new_tokens"])]
    # 1. shared warm start: plain SFT
    curve = _F1Curve(items, subset, s["warm_steps"], s["max_new_tokens"], s["image_size"] ** 2)
    warm_argv = _common_argv(base, data, work / "warm", s, 0) + ["--grounding-loss", "false", "--max-steps", str(s["warm_steps"]), "--lr", "0.001"]
    trainer, seconds = _train("sft", warm_argv, curve)
    trainer.save_model(str(work / "warm_model"))
    trainer.processing_class.save_pretrained(str(work / "warm_model"))
    result["warm_start"] = {**curve.last, "steps": s["warm_steps"], "wall_s": round(seconds, 1)}
    save()
    warm = work / "warm_model"
    variants = {
        "sft": ["--grounding-loss", "false"],
        "literal": ["--grounding-gradient", "none", "--samples-per-prompt", str(s["samples_per_prompt"])] + new_tokens,
        "hybrid": ["--samples-per-prompt", str(s["samples_per_prompt"])] + new_tokens,
        "grpo": ["--num-generations", str(s["samples_per_prompt"]), "--max-completion-length", str(s["max_new_tokens"]), "--lr", "0.00002"],
    }
    runs = [(name, seed, extra) for seed in s["seeds"] for name, extra in variants.items()]
    runs.append(("hybrid_lora", s["seeds"][0], variants["hybrid"] + ["--use-lora", "true", "--lr", "0.001", "--lora-r", "32", "--lora-alpha", "32",
                                                                     "--finetune-attention-modules", "true"]))
    for name, seed, extra in runs:
        print(f"branch {name}, seed {seed}", flush=True)
        curve = _F1Curve(items, subset, s["eval_every"], s["max_new_tokens"], s["image_size"] ** 2)
        argv_ = _common_argv(warm, data, work / f"{name}_{seed}", s, seed) + ["--max-steps", str(s["branch_steps"])] + extra
        kind = "grpo" if name == "grpo" else "sft"
        _, seconds = _train(kind, argv_, curve)
        result["branches"].setdefault(name, []).append(
            {"seed": seed, "metrics": curve.last, "curve": curve.curve, "wall_s": round(seconds, 1), "argv": argv_}
        )
        save()
    result["summary"] = summarize(result)
    save()
    plot(result, out.with_suffix(".png"))
    print(json.dumps(result["summary"], indent=1))
    return result


def summarize(result: dict) -> dict:
    """Mean and spread (half the max-min range) of each metric per branch."""
    import numpy as np

    out = {}
    for name, runs in result["branches"].items():
        out[name] = {}
        for key in ("f1", "precision", "recall", "mean_iou", "ap50", "unparseable_fraction"):
            values = np.array([r["metrics"][key] for r in runs], dtype=float)
            out[name][key] = {"mean": round(float(values.mean()), 4), "spread": round(float((values.max() - values.min()) / 2), 4)}
        out[name]["wall_s"] = round(float(np.mean([r["wall_s"] for r in runs])), 1)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in result["branches"].items():
        for i, r in enumerate(runs):
            if r["curve"]:
                ax.plot(*zip(*r["curve"]), label=name if i == 0 else None, color=f"C{list(result['branches']).index(name)}")
    ax.set_xlabel("steps after the warm start")
    ax.set_ylabel("test F1@0.5")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
