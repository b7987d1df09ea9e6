"""Does the grounding loss help? SFT vs literal vs hybrid vs GRPO, trained here.

    python scripts/bench_learning.py --out benchmarks/learning.json          # the real run (CUDA GPU)
    python scripts/bench_learning.py --quick --out /tmp/learning.json       # a few steps on a CPU

A small Qwen3-VL (random init, the project's byte tokenizer) learns the synthetic grounding
task (primary prompts plus negatives). A shared warm start of plain SFT (full fine-tuning)
comes first; from it, each branch trains the same number of steps on the same data order:

1. ``sft``: LM loss only;  2. ``literal``: LM + grounding terms as constants
(``grounding_gradient: none``);  3. ``hybrid``: LM + the policy-gradient surrogate;
4. ``grpo``: TRL's GRPOTrainer with the grounding + format rewards;  plus ``hybrid_lora``
(LoRA on the warm start) and each of ``variants`` (a branch with other flags) once.
Every branch runs for each of ``seeds``; each is evaluated on the held-out test set
every ``eval_every`` steps (greedy answers, ``scripts/eval_bbox.py``'s
metrics). ``jobs > 1`` runs that many branches at once, as separate processes sharing the
GPU (they time-slice it; this keeps all branches within one device call's time limit). Writes the JSON (the warm start's
curve; per branch and seed: metrics, F1 curve, wall-clock, training signals, command line)
as results come in, and a plot of F1 vs steps next to it. ``--set KEY=VALUE`` overrides a
setting (``--set branches=[]`` stops after the warm start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BRANCHES = ("sft", "literal", "hybrid", "grpo", "hybrid_lora")
WARM_KEYS = ("n_images", "image_size", "max_objects", "negative_fraction", "hidden", "layers", "vision_hidden", "vision_depth")
SIGNALS = ("grounding_cost", "grounding_cost_std", "grounding_cost_group_std", "f1", "sampled_tokens", "reward", "reward_std")


def _settings(quick: bool) -> dict:
    """The benchmark's knobs (``--set KEY=VALUE`` overrides one). ``warm_seconds`` ends the
    warm start early (its LR is constant after warmup, so the schedule does not depend on
    where it stops); ``branch_seconds`` is a guard for the device's time limit (a branch
    stopped by it records fewer ``steps``)."""
    if quick:
        return dict(n_images=30, image_size=64, max_objects=3, negative_fraction=1.0, hidden=64, layers=2, vision_hidden=32,
                    vision_depth=2, warm_steps=2, warm_seconds=600, branch_seconds=600, warm_eval_every=2, warm_lr=1e-3, warm_batch=4, branch_steps=2,
                    branch_lr=5e-4, branch_batch=4, eval_every=2, seeds=[0], max_new_tokens=24, samples_per_prompt=2,
                    test_limit=6, eval_batch=8, branches=list(BRANCHES), variants={}, jobs=1, warm_workers=0)
    return dict(n_images=6000, image_size=128, max_objects=4, negative_fraction=0.25, hidden=384, layers=6, vision_hidden=192,
                vision_depth=4, warm_steps=20000, warm_seconds=360, branch_seconds=420, warm_eval_every=250, warm_lr=1e-3, warm_batch=128,
                branch_steps=120, branch_lr=2e-4, branch_batch=16, eval_every=40, seeds=[0, 1], max_new_tokens=160,
                samples_per_prompt=4, test_limit=200, eval_batch=200, branches=list(BRANCHES), jobs=10, warm_workers=6,
                # investigation: a denser reward (pairs match from IoU 0.1, so near misses score)
                variants={"hybrid_iou0.1": {"base": "hybrid", "flags": ["--iou-threshold", "0.1"]}})


def _common_argv(model, data: Path, out: Path, s: dict, seed: int, batch: int, workers: int = 0) -> list[str]:
    return [
        "--model", str(model), "--train-json", str(data / "train.json"), "--img-root", str(data), "--add-negatives", "true",
        "--negative-fraction", str(s["negative_fraction"]), "--max-pixels", str(s["image_size"] ** 2),
        "--output-dir", str(out), "--batch-size", str(batch), "--gradient-accumulation-steps", "1",
        "--logging-steps", "10", "--save-strategy", "no", "--report-to", "none", "--seed", str(seed),
        "--gradient-checkpointing", "false", "--no-use-lora", "--no-load-in-4bit",
        "--dataloader-num-workers", str(workers),
    ]


def _branch_argv(name: str, s: dict) -> list[str]:
    """The flags that make branch ``name`` (after the common ones); a name in ``variants``
    is its ``base`` branch plus its ``flags``."""
    if name in s["variants"]:
        return _branch_argv(s["variants"][name]["base"], s) + s["variants"][name]["flags"]
    sampled = ["--samples-per-prompt", str(s["samples_per_prompt"]), "--sample-max-new-tokens", str(s["max_new_tokens"])]
    constant_lr = ["--lr", str(s["branch_lr"]), "--lr-scheduler-type", "constant"]
    return constant_lr + {
        "sft": ["--grounding-loss", "false"],
        "literal": ["--grounding-gradient", "none"] + sampled,
        "hybrid": sampled,
        "grpo": ["--num-generations", str(s["samples_per_prompt"]), "--max-completion-length", str(s["max_new_tokens"])],
        # LoRA needs a larger step than full fine-tuning to move as far
        "hybrid_lora": sampled + ["--use-lora", "true", "--lr", str(s["branch_lr"] * 5), "--lora-r", "32", "--lora-alpha", "32",
                                  "--finetune-attention-modules", "true"],
    }[name]


class _F1Curve:
    """Evaluate the model on the test items every ``every`` steps (greedy answers);
    ``on_measure(curve)`` is called after each point (to save progress)."""

    def __init__(self, test, every: int, on_measure=None):
        from transformers import TrainerCallback

        outer = self
        self.test, self.every, self.on_measure = test, every, on_measure
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
        self.last = self.test.evaluate(model, trainer.processing_class)
        self.curve.append((step, self.last["f1"]))
        print(f"  step {step}: F1@0.5 {self.last['f1']:.3f}, unparseable {self.last['unparseable_fraction']:.2f}", flush=True)
        if self.on_measure:
            self.on_measure(self)
        return self.last


def _test_rows(data: Path, s: dict) -> list[dict]:
    """The held-out examples: the first ``test_limit`` of ``test.json`` (with negatives)."""
    from trl_ground.config import DataArguments
    from trl_ground.data import build_examples
    from trl_ground.records import load_records

    records, _ = load_records(data / "test.json", data)
    return build_examples(records, DataArguments(add_negatives=True))[: s["test_limit"]]


def _write_test_truth(data: Path, s: dict) -> None:
    """``test_subset.json``: the records of the held-out examples (written once, before any
    branch process reads it)."""
    keep = {r["image_id"] for r in _test_rows(data, s)}
    (data / "test_subset.json").write_text(json.dumps([r for r in json.loads((data / "test.json").read_text()) if r["image"] in keep]))


class _TestSet:
    """The held-out items and their ground truth (``test_subset.json``)."""

    def __init__(self, data: Path, s: dict):
        from trl_ground.predict import items_from_examples

        self.items = items_from_examples(_test_rows(data, s))
        self.truth = data / "test_subset.json"
        self.s = s

    def evaluate(self, model, processor) -> dict:
        """predict -> the evaluation report, on the test items; ``empty_fraction``: answers
        with no box (a model that learned to abstain shows it here)."""
        from trl_ground.evaluate import evaluate
        from trl_ground.predict import predict

        was_training = model.training
        model.eval()
        outputs = predict(model, processor, self.items, batch_size=self.s["eval_batch"], max_new_tokens=self.s["max_new_tokens"],
                          max_pixels=self.s["image_size"] ** 2, progress=False)
        model.train(was_training)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(outputs, f)
        metrics = evaluate(f.name, self.truth)
        os.unlink(f.name)
        keep = ("precision", "recall", "f1", "mean_iou", "ap50")
        n = max(len(self.items), 1)
        return {**{k: metrics[k] for k in keep}, "unparseable_fraction": metrics["counts"]["unparseable_answers"] / n,
                "empty_fraction": sum(1 for o in outputs if not o["boxes"]) / n}


def _time_budget(seconds: float):
    """A callback that stops training once ``seconds`` have passed since it began."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() - self.start > seconds:
                control.should_training_stop = True

    return TimeBudget()


def _train(kind: str, argv: list[str], curve: _F1Curve, seconds: float):
    """Build the trainer for ``argv`` (SFT-style or GRPO), train with the F1 curve attached
    for at most ``seconds`` (the last point is always measured); returns ``(trainer, seconds)``."""
    from trl_ground.config import GroundingGRPOConfig, parse_args

    if kind == "grpo":
        from trl_ground.grpo import build_grpo_trainer

        trainer = build_grpo_trainer(*parse_args(argv, config_class=GroundingGRPOConfig))
    else:
        from trl_ground.train import build_trainer

        trainer = build_trainer(*parse_args(argv))
    curve.callback.trainer = trainer
    trainer.add_callback(curve.callback)
    trainer.add_callback(_time_budget(seconds))
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    if not curve.curve or curve.curve[-1][0] != trainer.state.global_step:
        curve.measure(trainer, trainer.state.global_step)
    return trainer, elapsed


def _signals(log_history: list[dict]) -> dict:
    """Means of the training signals over the logged steps (how much the sampled answers
    differed, what they scored)."""
    out = {}
    for key in SIGNALS:
        values = [row[key] for row in log_history if key in row]
        if values:
            out[key] = round(sum(values) / len(values), 4)
    return out


def run_branch(work: Path, s: dict, name: str, seed: int) -> dict:
    """Train branch ``name`` from the warm start with ``seed``; its result row."""
    curve = _F1Curve(_TestSet(work / "data", s), s["eval_every"])
    argv = _common_argv(work / "warm_model", work / "data", work / f"{name}_{seed}", s, seed, s["branch_batch"])
    argv += ["--max-steps", str(s["branch_steps"])] + _branch_argv(name, s)
    base = s["variants"][name]["base"] if name in s["variants"] else name
    trainer, seconds = _train("grpo" if base == "grpo" else "sft", argv, curve, s["branch_seconds"])
    return {"seed": seed, "steps": trainer.state.global_step, "metrics": curve.last, "curve": curve.curve, "wall_s": round(seconds, 1),
            "signals": _signals(trainer.state.log_history), "argv": argv}


def _prepare(work: Path, s: dict) -> None:
    """Data, the random-init model and the settings under ``work``."""
    from trl_ground.synthetic import make_synthetic_dataset
    from trl_ground.tiny import build_tiny_qwen3vl

    make_synthetic_dataset(work / "data", n=s["n_images"], seed=1234, test_fraction=0.1, size=s["image_size"], max_objects=s["max_objects"])
    _write_test_truth(work / "data", s)
    build_tiny_qwen3vl(work / "init", seed=0, hidden=s["hidden"], layers=s["layers"], image_size=s["image_size"] ** 2,
                       vision_hidden=s["vision_hidden"], vision_depth=s["vision_depth"])
    (work / "settings.json").write_text(json.dumps(s))


def _warm_start(work: Path, s: dict, on_measure) -> dict:
    """Plain SFT from random init (linear warmup, then constant LR) for ``warm_steps`` or
    ``warm_seconds``, whichever ends first; saves ``warm_model`` and its result."""
    curve = _F1Curve(_TestSet(work / "data", s), s["warm_eval_every"], on_measure)
    argv = _common_argv(work / "init", work / "data", work / "warm", s, 0, s["warm_batch"], s["warm_workers"]) + [
        "--grounding-loss", "false", "--max-steps", str(s["warm_steps"]), "--lr", str(s["warm_lr"]),
        "--lr-scheduler-type", "constant_with_warmup", "--warmup-steps", str(min(100, max(1, s["warm_steps"] // 20))),
    ]
    trainer, seconds = _train("sft", argv, curve, s["warm_seconds"])
    trainer.save_model(str(work / "warm_model"))
    trainer.processing_class.save_pretrained(str(work / "warm_model"))
    row = {**curve.last, "steps": trainer.state.global_step, "wall_s": round(seconds, 1), "curve": curve.curve,
           "settings": {k: s[k] for k in WARM_KEYS}}
    (work / "warm_model" / "warm_start.json").write_text(json.dumps(row))
    return row


def _reuse_warm(source: Path, work: Path, s: dict) -> dict:
    """Copy a warm model written by ``--export-warm`` into ``work``; its recorded result
    (the data and model settings must match this run's)."""
    row = json.loads((source / "warm_start.json").read_text())
    differ = {k: (row["settings"][k], s[k]) for k in WARM_KEYS if row["settings"][k] != s[k]}
    if differ:
        raise SystemExit(f"{source} was trained with other settings (theirs, ours): {differ}")
    shutil.copytree(source, work / "warm_model", dirs_exist_ok=True)
    return {**row, "from": str(source)}


def export_warm(work: Path, tar_path: Path) -> None:
    """The warm model in bf16 (with its ``warm_start.json``) as one tar: to resume the
    branches elsewhere (``--warm-from``)."""
    import tarfile

    import torch
    from transformers import AutoModelForImageTextToText

    export = work / "warm_export"
    model = AutoModelForImageTextToText.from_pretrained(work / "warm_model", dtype=torch.bfloat16)
    model.save_pretrained(export)
    for f in (work / "warm_model").iterdir():
        if not f.name.endswith((".safetensors", ".bin")) and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy(f, export / f.name)
    with tarfile.open(tar_path, "w") as tar:
        tar.add(export, arcname="warm_model")


def _run_in_processes(work: Path, runs: list[tuple[str, int]], jobs: int, on_result) -> list[str]:
    """Each ``(name, seed)`` in its own ``--child`` process, at most ``jobs`` at once;
    ``on_result(name, row)`` as each ends. Returns the runs that failed (``"name:seed"``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // jobs))}
    pending, running, failed = list(runs), {}, []
    (work / "logs").mkdir(exist_ok=True)
    while pending or running:
        while pending and len(running) < jobs:
            name, seed = pending.pop(0)
            log = open(work / "logs" / f"{name}_{seed}.log", "w")
            cmd = [sys.executable, "-m", "trl_ground.benchmarks.learning", "--work-dir", str(work), "--child", f"{name}:{seed}"]
            running[(name, seed)] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        time.sleep(2)
        for key, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[key]
            part = work / "parts" / f"{key[0]}_{key[1]}.json"
            if proc.returncode != 0 or not part.exists():
                tail = (work / "logs" / f"{key[0]}_{key[1]}.log").read_text()[-3000:]
                print(f"branch {key} failed (exit {proc.returncode}):\n{tail}", flush=True)
                failed.append(f"{key[0]}:{key[1]}")
                continue
            on_result(key[0], json.loads(part.read_text()))
    return failed


def run(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/learning.json")
    ap.add_argument("--quick", action="store_true", help="tiny CPU run (the tests use it)")
    ap.add_argument("--work-dir", help="where data and models go (default: a temporary folder)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (JSON value), e.g. --set warm_steps=500")
    ap.add_argument("--export-warm", metavar="TAR", help="also write the warm model (bf16) as this tar file")
    ap.add_argument("--warm-from", metavar="DIR", help="skip the warm start: use this model directory written by --export-warm")
    ap.add_argument("--child", metavar="NAME:SEED", help=argparse.SUPPRESS)  # one branch, in a process of its own
    args = ap.parse_args(argv)
    import torch

    if args.child:
        work = Path(args.work_dir)
        s = json.loads((work / "settings.json").read_text())
        name, seed = args.child.split(":")
        row = run_branch(work, s, name, int(seed))
        (work / "parts").mkdir(exist_ok=True)
        (work / "parts" / f"{name}_{seed}.json").write_text(json.dumps(row))
        return None

    s = _settings(args.quick)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in s:
            raise SystemExit(f"unknown setting {key!r}; settings: {sorted(s)}")
        s[key] = json.loads(value)
    unknown = set(s["branches"]) - set(BRANCHES)
    if unknown:
        raise SystemExit(f"unknown branches {sorted(unknown)}; branches: {list(BRANCHES)}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_learning_"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "command": "python scripts/bench_learning.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "settings": s,
        "branches": {},
    }

    def save():
        out.write_text(json.dumps(result, indent=2) + "\n")

    def on_warm_point(curve):
        result["warm_start"] = {"curve": curve.curve, "last": curve.last}
        save()

    start = time.perf_counter()
    reused = _reuse_warm(Path(args.warm_from), work, s) if args.warm_from else None  # checked before the data is made
    _prepare(work, s)
    print(f"data and model ready in {time.perf_counter() - start:.0f} s", flush=True)
    result["warm_start"] = reused or _warm_start(work, s, on_warm_point)
    save()
    if args.export_warm:
        export_warm(work, Path(args.export_warm))

    def on_result(name, row):
        result["branches"].setdefault(name, []).append(row)
        result["branches"][name].sort(key=lambda r: r["seed"])
        result["summary"] = summarize(result)
        save()
        print(f"branch {name} seed {row['seed']}: F1@0.5 {row['metrics']['f1']:.3f} in {row['wall_s']} s", flush=True)

    runs = [(name, seed) for seed in s["seeds"] for name in s["branches"] if name != "hybrid_lora"]
    runs += [(name, s["seeds"][0]) for name in ["hybrid_lora"] * ("hybrid_lora" in s["branches"]) + list(s["variants"])]
    if s["jobs"] > 1:
        failed = _run_in_processes(work, runs, s["jobs"], on_result)
        if failed:
            result["failed"] = failed
    else:
        for name, seed in runs:
            print(f"branch {name}, seed {seed}", flush=True)
            on_result(name, run_branch(work, s, name, seed))
    result["total_wall_s"] = round(time.perf_counter() - start, 1)
    save()
    plot(result, out.with_suffix(".png"))
    print(json.dumps(result.get("summary", {}), indent=1))
    if result.get("failed"):
        raise SystemExit(f"branches failed: {result['failed']} (logs under {work / 'logs'})")
    return result


def summarize(result: dict) -> dict:
    """Mean and spread (half the max-min range) of each metric per branch."""
    import numpy as np

    out = {}
    for name, runs in result["branches"].items():
        out[name] = {"seeds": len(runs)}
        for key in ("f1", "precision", "recall", "mean_iou", "ap50", "unparseable_fraction", "empty_fraction"):
            values = np.array([r["metrics"][key] for r in runs], dtype=float)
            out[name][key] = {"mean": round(float(values.mean()), 4), "spread": round(float((values.max() - values.min()) / 2), 4)}
        out[name]["wall_s"] = round(float(np.mean([r["wall_s"] for r in runs])), 1)
    return out


def plot(result: dict, path: Path) -> None:
    """Left: the warm start's test F1; right: each branch's (one line per seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (warm_ax, ax) = plt.subplots(1, 2, figsize=(10, 4))
    if result.get("warm_start", {}).get("curve"):
        warm_ax.plot(*zip(*result["warm_start"]["curve"]), color="k")
    warm_ax.set(xlabel="warm-start steps (plain SFT)", ylabel="test F1@0.5", title="warm start")
    start = result.get("warm_start", {}).get("f1")
    for i, (name, runs) in enumerate(result["branches"].items()):
        for j, r in enumerate(runs):
            points = ([(0, start)] if start is not None else []) + [tuple(p) for p in r["curve"]]
            ax.plot(*zip(*points), label=name if j == 0 else None, color=f"C{i}", linestyle="-" if j == 0 else "--")
    ax.set(xlabel="steps after the warm start", ylabel="test F1@0.5", title="branches (one line per seed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    """The command: run the benchmark (its result is written to ``--out``/``--json``)."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
