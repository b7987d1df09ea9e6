"""Does the grounding loss help? SFT against the hybrid loss's variants and GRPO, trained here.

    trl-ground-bench-learning --out benchmarks/learning.json --export-warm benchmarks/warm_start      # CUDA GPU
    trl-ground-bench-learning --quick --out /tmp/learning.json                                        # a few steps on a CPU

A small Qwen3-VL of the real architecture (random init, the project's tokenizer with the JSON
skeleton as tokens) learns the synthetic grounding task (primary queries plus negatives).
A shared **warm start** of plain SFT comes first (cosine schedule, a NaN guard that stops and
says so); from it every **branch** trains the same number of steps on the same data order
(per seed), with the project's own trainers and evaluation code:

- ``sft``: LM loss only;  ``literal``: LM + the counts terms as constants (the reference
  script's behaviour: sampling, no gradient of its own);  ``shuffled``: the hybrid with its
  advantages permuted across answers (the same gradient noise, no reward signal);
  ``hybrid_counts``: the counts cost with the policy gradient;  ``hybrid``: the dense cost
  with box-level credit (the default);  ``hybrid_sequence``: the dense cost with
  sequence-level credit;  ``grpo``: TRL's GRPOTrainer with the same dense grounding reward
  plus the format reward;  and each of ``variants``.

Settings a branch is sensitive to (its LR, the policy term's weight) are chosen per branch on
**validation** (``tune``: each candidate trained once with ``tune_seed``), then every seed
trains with the chosen one. Each run records a validation curve (F1@0.5 every ``eval_every``
steps, against training seconds) and its final metrics on the held-out test scenes, split by
prompt type (with and without boxes) by :func:`trl_ground.inference.evaluate.evaluate`, with the
counts of every test query so that branches can be compared query by query and seed by seed
(:mod:`.learning_summary`, :mod:`.paired`). Branches run as separate processes (``jobs`` at
once, sharing the GPU); the result JSON is rewritten as results come in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trl_ground.benchmarks import benchmark_command

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import TrainerCallback  # noqa: E402

from trl_ground.benchmarks.learning_summary import base_kind, plot, summarize  # noqa: E402
from trl_ground.benchmarks.warm_start import WARM_DIR, export_warm, reuse_warm, unpack_warm  # noqa: E402
from trl_ground.config.benchmark import LearningBenchSettings  # noqa: E402

__all__ = ["main", "run"]

SIGNALS = ("grounding_cost", "grounding_cost_std", "grounding_cost_group_std", "f1", "sampled_tokens", "box_credit_fraction",
           "reward", "reward_std", "loss", "lm_loss", "grad_norm")
TUNED_FILE = "tuned.json"  # the flags each tuned branch trains its seeds with


# ---- data, model, evaluation -----------------------------------------------------------
def prepare(work: Path, s: LearningBenchSettings) -> None:
    """Data (train / val / test scenes), the random-init model and the settings under
    ``work``; data already there for the same data settings is kept (several runs can share
    one data folder)."""
    from trl_ground.data.synthetic import CLASSES, make_synthetic_dataset
    from trl_ground.model.tiny import ANSWER_TOKENS, build_tiny_qwen3vl

    data = work / "data"
    data_settings = {k: getattr(s, k) for k in ("n_images", "image_size", "max_objects", "val_images", "test_images", "data_seed")}
    stamp = data / "data_settings.json"
    if not (stamp.exists() and json.loads(stamp.read_text()) == data_settings):
        make_synthetic_dataset(data, n=s.n_images, seed=s.data_seed, test_fraction=s.test_images / s.n_images, size=s.image_size,
                               max_objects=s.max_objects, val_fraction=s.val_images / s.n_images, workers=s.data_workers)
        stamp.write_text(json.dumps(data_settings))
    words = ANSWER_TOKENS + CLASSES if s.word_tokens else ()
    build_tiny_qwen3vl(work / "init", seed=0, hidden=s.hidden, layers=s.layers, image_size=s.image_size**2,
                       vision_hidden=s.vision_hidden, vision_depth=s.vision_depth, word_tokens=words, patch_size=s.patch_size)
    (work / "settings.json").write_text(json.dumps(s.as_dict(), indent=1))


class EvalSet:
    """The held-out scenes of one split: each asked its primary query and one negative query,
    answered greedily, scored by the project's evaluation code."""

    def __init__(self, data: Path, split: str, s: LearningBenchSettings):
        from trl_ground.config import DataArguments
        from trl_ground.data.dataset import build_examples
        from trl_ground.data.records import load_records
        from trl_ground.inference.predict import items_from_examples

        records, _ = load_records(data / f"{split}.json", data, check_images=False)
        args = DataArguments(add_negatives=True, system_prompt=s.system_prompt, query_template=s.query_template)
        self.items = items_from_examples(build_examples(records, args))
        self.truth = data / f"{split}.json"
        self.s = s

    def evaluate(self, model, processor, per_query: bool = False) -> dict:
        """Greedy answers -> the evaluation's metrics (the keys of
        :data:`~trl_ground.benchmarks.learning_summary.METRIC_KEYS`), and with ``per_query``
        the counts of every query (``per_query``: :func:`trl_ground.inference.metrics.query_counts`)."""
        from trl_ground.inference.evaluate import evaluate
        from trl_ground.inference.predict import predict

        was_training = model.training
        model.eval()
        outputs = predict(model, processor, self.items, batch_size=self.s.eval_batch, max_new_tokens=self.s.max_completion_length,
                          max_pixels=self.s.image_size**2, system_prompt=self.s.system_prompt, progress=False)
        model.train(was_training)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "outputs.json"
            path.write_text(json.dumps(outputs))
            m = evaluate(path, self.truth, prompt_mode="primary", add_negatives=True, per_query=per_query)
        positive = m["with_boxes"]
        out = {k: m[k] for k in ("f1", "precision", "recall", "mean_iou", "ap50", "empty_fraction_positive",
                                 "hallucination_fraction_negative", "duplicate_fraction", "unparseable_fraction", "tokens_per_answer")}
        out.update({f"{k}_positive": positive[k] for k in ("f1", "precision", "recall", "mean_iou", "ap50")})
        if per_query:
            out["per_query"] = m["per_query"]
        return out

    def query_mix(self) -> tuple[int, int]:
        """``(queries with boxes, queries without)`` of this split."""
        positive = sum(1 for item in self.items if item.meta["mode"] != "negative")
        return positive, len(self.items) - positive


# ---- callbacks --------------------------------------------------------------------------
class ValidationCurve(TrainerCallback):
    """Validation F1 every ``every`` steps, against training seconds (evaluation time left out)."""

    def __init__(self, val: EvalSet, every: int, on_point=None):
        self.val, self.every, self.on_point = val, every, on_point
        self.trainer = None
        self.points: list[dict] = []
        self.eval_seconds = 0.0
        self.start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_seconds

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.measure(state.global_step)

    def measure(self, step: int) -> dict:
        begin = time.perf_counter()
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        metrics = self.val.evaluate(model, self.trainer.processing_class)
        self.eval_seconds += time.perf_counter() - begin
        point = {"step": step, "train_s": round(self.train_seconds(), 1), "val_f1": metrics["f1"],
                 "val_f1_positive": metrics["f1_positive"], "val_empty_fraction_positive": metrics["empty_fraction_positive"]}
        self.points.append(point)
        print(f"  step {step}: val F1@0.5 {metrics['f1']:.3f} (boxes {metrics['f1_positive']:.3f}), "
              f"empty {metrics['empty_fraction_positive']:.2f}, {point['train_s']} s", flush=True)
        if self.on_point:
            self.on_point(self.points)
        return metrics


class StepTimer(TrainerCallback):
    """Seconds per step after the first ``skip`` steps (compilation, caches, first batches)."""

    def __init__(self, skip: int):
        self.skip, self.begin, self.end, self.steps = skip, None, None, 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.skip:
            self.begin = time.perf_counter()
        elif state.global_step > self.skip:
            self.end, self.steps = time.perf_counter(), state.global_step - self.skip

    def seconds_per_step(self) -> float | None:
        return round((self.end - self.begin) / self.steps, 4) if self.steps else None


class StopGuard(TrainerCallback):
    """Stops training after ``seconds`` of training time, or at a non-finite loss (and says so)."""

    def __init__(self, seconds: float, curve: ValidationCurve):
        self.seconds, self.curve = seconds, curve
        self.nan_at: int | None = None
        self.timed_out = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.curve.train_seconds() > self.seconds:
            self.timed_out = control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.nan_at = state.global_step
            control.should_training_stop = True
            print(f"  non-finite loss at step {state.global_step}: training stopped", flush=True)


# ---- runs -------------------------------------------------------------------------------
def _common_argv(model, data: Path, out: Path, s: LearningBenchSettings, seed: int, batch: int, workers: int) -> list[str]:
    return [
        "--model", str(model), "--train-json", str(data / "train.json"), "--img-root", str(data), "--add-negatives", "true",
        "--negative-fraction", str(s.negative_fraction), "--max-pixels", str(s.image_size**2), "--image-check", "false",
        "--system-prompt", s.system_prompt, "--query-template", s.query_template,
        "--output-dir", str(out), "--batch-size", str(batch), "--gradient-accumulation-steps", "1",
        "--logging-steps", "10", "--save-strategy", "no", "--report-to", "none", "--seed", str(seed),
        "--gradient-checkpointing", "false", "--no-use-lora", "--no-load-in-4bit", "--max-grad-norm", "1.0",
        "--dataloader-num-workers", str(workers), "--eval-strategy", "no", "--disable-tqdm", "true",
    ] + (["--dataloader-persistent-workers", "true", "--dataloader-prefetch-factor", "4"] if workers else [])


def branch_flags(name: str, s: LearningBenchSettings) -> list[str]:
    """The flags that make branch ``name`` (after the common ones)."""
    if name in s.variants:
        return branch_flags(s.variants[name]["base"], s) + list(s.variants[name].get("flags", []))
    temperature = ["--temperature", str(s.temperature)] if s.temperature is not None else []
    generations = ["--num-generations", str(s.num_generations), "--max-completion-length", str(s.max_completion_length), *temperature]
    constant = ["--lr", str(s.branch_lr), "--lr-scheduler-type", "constant"]
    return constant + {
        "sft": ["--grounding-loss", "false"],
        "literal": ["--grounding-gradient", "none", "--cost", "counts"] + generations,
        "hybrid_counts": ["--cost", "counts", "--credit", "sequence"] + generations,
        "hybrid": ["--cost", "dense", "--credit", "box"] + generations,
        "shuffled": ["--cost", "dense", "--credit", "box", "--shuffle-advantages", "true"] + generations,
        "hybrid_sequence": ["--cost", "dense", "--credit", "sequence"] + generations,
        # same prompts per step as the other branches: batch x K completions
        "grpo": ["--cost", "dense", *generations, "--beta", "0.0", "--batch-size", str(s.branch_batch * s.num_generations)],
    }[name]


def train_run(kind: str, argv: list[str], curve: ValidationCurve, seconds: float, extra_callbacks=(), before_train=None) -> tuple:
    """Build the trainer for ``argv`` (SFT-style or GRPO), train with the validation curve
    and the stop guard (``before_train(trainer)`` first, if given); returns ``(trainer, guard)``."""
    from trl_ground.config import GroundingGRPOConfig, parse_args

    if kind == "grpo":
        from trl_ground.train.grpo import build_grpo_trainer

        trainer = build_grpo_trainer(*parse_args(argv, config_class=GroundingGRPOConfig))
    else:
        from trl_ground.train.job import build_trainer

        trainer = build_trainer(*parse_args(argv))
    guard = StopGuard(seconds, curve)
    curve.trainer = trainer
    for callback in (curve, guard, *extra_callbacks):
        trainer.add_callback(callback)
    if before_train:
        before_train(trainer)
    trainer.train()
    return trainer, guard


def signals(log_history: list[dict]) -> dict:
    """Means of the training signals over the logged steps."""
    out = {}
    for key in SIGNALS:
        values = [row[key] for row in log_history if key in row and isinstance(row[key], (int, float))]
        if values:
            out[key] = round(sum(values) / len(values), 4)
    return out


def _run_row(trainer, guard, curve: ValidationCurve, test: EvalSet | None, argv: list[str]) -> dict:
    """A run's record: its validation curve (closed by a point at its last step), training
    signals and, unless ``test`` is None (tuning runs never look at test data), its test
    metrics and the per-query counts behind them."""
    if not curve.points or curve.points[-1]["step"] != trainer.state.global_step:
        curve.measure(trainer.state.global_step)
    row = {"steps": trainer.state.global_step, "wall_s": curve.points[-1]["train_s"], "curve": curve.points,
           "signals": signals(trainer.state.log_history), "nan_at_step": guard.nan_at, "stopped_by_time": guard.timed_out,
           "argv": argv}
    if test is not None:
        metrics = test.evaluate(trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class, per_query=True)
        row["per_query"] = metrics.pop("per_query")
        row["metrics"] = metrics
    return row


class WarmSnapshots(TrainerCallback):
    """Saves the warm model at the steps of ``warm_snapshots`` as ``work/warm_step_N/``, each a
    warm model that ``--warm-from`` accepts (its record holds the curve up to that step)."""

    def __init__(self, work: Path, s: LearningBenchSettings, curve: ValidationCurve):
        self.work, self.s, self.curve = work, s, curve
        self.trainer = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.s.warm_snapshots:
            if not self.curve.points or self.curve.points[-1]["step"] != state.global_step:
                self.curve.measure(state.global_step)
            _save_warm(self.trainer, self.work / f"warm_step_{state.global_step}", self.s,
                       {"steps": state.global_step, "curve": list(self.curve.points), "snapshot": True})


def _save_warm(trainer, out: Path, s: LearningBenchSettings, row: dict) -> None:
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    (out / "warm_start.json").write_text(json.dumps({**row, "settings": s.warm_fingerprint()}))


def warm_start(work: Path, s: LearningBenchSettings, init: Path, on_point=None) -> dict:
    """Plain SFT from ``init`` (``warm_lr_scheduler`` with warmup); saves ``work/warm_model``
    (and the ``warm_snapshots``) and its row."""
    data = work / "data"
    curve = ValidationCurve(EvalSet(data, "val", s), s.warm_eval_every, on_point)
    schedule = ["--lr-scheduler-type", s.warm_lr_scheduler]
    if s.warm_lr_scheduler == "cosine_with_min_lr":
        schedule += ["--lr-scheduler-kwargs", json.dumps({"min_lr_rate": s.warm_min_lr_rate})]
    argv = _common_argv(init, data, work / "warm", s, 0, s.warm_batch, s.warm_workers) + schedule + [
        "--grounding-loss", "false", "--max-steps", str(s.warm_steps), "--lr", str(s.warm_lr),
        "--warmup-steps", str(s.warm_warmup_steps), "--weight-decay", str(s.warm_weight_decay),
        "--optim", "adamw_torch_fused" if _cuda() else "adamw_torch", "--adam-beta2", "0.98",
    ]
    snapshots = WarmSnapshots(work, s, curve)
    trainer, guard = train_run("sft", argv, curve, s.warm_seconds, [snapshots], before_train=lambda t: setattr(snapshots, "trainer", t))
    row = _run_row(trainer, guard, curve, EvalSet(data, "test", s), argv)
    row["init"] = str(init)
    _save_warm(trainer, work / WARM_DIR, s, row)
    return {**row, "settings": s.warm_fingerprint()}


def tuned_flags(work: Path, name: str) -> list[str]:
    """The flags tuning chose for branch ``name`` (none when it was not tuned)."""
    path = work / TUNED_FILE
    return json.loads(path.read_text()).get(name, []) if path.exists() else []


def run_branch(work: Path, s: LearningBenchSettings, name: str, seed: int, timing: bool = False, candidate: int | None = None) -> dict:
    """Train branch ``name`` from the warm start with ``seed``; its result row. ``candidate``:
    a tuning run of ``s.tune[name][candidate]`` (validation only); otherwise the branch
    trains with its tuned flags. ``timing``: instead, ``2 + timing_steps`` steps with no
    evaluation, and the seconds per step after the first two."""
    data = work / "data"
    steps = 2 + s.timing_steps if timing else s.branch_steps
    curve = ValidationCurve(EvalSet(data, "val", s), 10**9 if timing else s.eval_every)
    label = f"{name}_{seed}" if candidate is None else f"{name}_tune{candidate}"
    argv = _common_argv(work / WARM_DIR, data, work / "runs" / label, s, seed, s.branch_batch, 0)
    extra = s.tune[name][candidate] if candidate is not None else tuned_flags(work, name)
    argv += ["--max-steps", str(steps)] + branch_flags(name, s) + list(extra) + list(s.extra_flags)
    kind = "grpo" if base_kind(name, s) == "grpo" else "sft"
    timer = StepTimer(skip=2)
    trainer, guard = train_run(kind, argv, curve, s.branch_seconds, [timer])
    if timing:
        return {"seconds_per_step": timer.seconds_per_step()}
    test = EvalSet(data, "test", s) if candidate is None else None
    return {"seed": seed, "candidate": candidate, **_run_row(trainer, guard, curve, test, argv)}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def speed_probe(work: Path, s: LearningBenchSettings, steps: int = 40) -> dict:
    """The warm start's training step, measured: seconds per step (after 5 warm-up steps)
    with and without the packed vision attention, and a profile of 3 steps (GPU busy time,
    CPU time, kernel launches)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    data = work / "data"
    out = {"batch": s.warm_batch}
    for label, packed in (("packed_vision_attention", "true"), ("per_image_vision_attention", "false")):
        argv = _common_argv(work / "init", data, work / "probe", s, 0, s.warm_batch, s.warm_workers) + [
            "--grounding-loss", "false", "--max-steps", str(5 + steps), "--lr", "1e-4", "--packed-vision-attention", packed,
            "--optim", "adamw_torch_fused" if _cuda() else "adamw_torch",
        ]
        timer = StepTimer(skip=5)
        curve = ValidationCurve(EvalSet(data, "val", s), 10**9)
        train_run("sft", argv, curve, 3600, [timer])
        out[label] = {"seconds_per_step": timer.seconds_per_step(), "steps_per_second": round(1 / timer.seconds_per_step(), 2)}
        print(f"  {label}: {out[label]}", flush=True)
    # a profile of 3 steps of the default path, outside the Trainer's loop
    from trl_ground.config import parse_args
    from trl_ground.train.job import build_trainer

    argv = _common_argv(work / "init", data, work / "probe", s, 0, s.warm_batch, 0) + ["--grounding-loss", "false", "--max-steps", "10"]
    trainer = build_trainer(*parse_args(argv))
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    trainer.current_gradient_accumulation_steps = 1
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))

    def step():
        with trainer.accelerator.autocast():
            trainer.training_step(trainer.model, dict(batch))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if _cuda() else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step()
        if _cuda():
            torch.cuda.synchronize()
    events = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in events) if _cuda() else 0
    out["profile_3_steps"] = {
        "cpu_s": round(sum(e.self_cpu_time_total for e in events) / 1e6, 3),
        "gpu_busy_s": round(device_us / 1e6, 3),
        "kernel_launches": int(sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))),
        "top_cpu_ops": [(e.key, e.count, round(e.self_cpu_time_total / 1e3, 1)) for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]],
    }
    return out


def evaluate_warm(work: Path, s: LearningBenchSettings) -> dict:
    """The warm model's test metrics and per-query counts (for a warm start saved without them)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(work / WARM_DIR, dtype=torch.float32)
    if _cuda():
        model = model.cuda()
    processor = AutoProcessor.from_pretrained(work / WARM_DIR)
    processor.tokenizer.padding_side = "left"
    metrics = EvalSet(work / "data", "test", s).evaluate(model, processor, per_query=True)  # in fp32, as the branches
    return {"per_query": metrics.pop("per_query"), "metrics": metrics}


# ---- several processes --------------------------------------------------------------------
def run_children(work: Path, runs: list[tuple], jobs: int, on_result) -> list[str]:
    """Each ``(name, seed)`` or ``(name, seed, candidate)`` in a process of its own
    (``--child``), at most ``jobs`` at once; ``on_result(name, row)`` as each ends. Returns
    the runs that failed (``"name:seed[:candidate]"``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    pending, running, failed = list(runs), {}, []
    (work / "logs").mkdir(exist_ok=True)
    while pending or running:
        while pending and len(running) < jobs:
            spec = ":".join(str(x) for x in pending.pop(0))
            log = open(work / "logs" / f"{spec.replace(':', '_')}.log", "w")
            cmd = [sys.executable, "-m", "trl_ground.benchmarks.learning", "--work-dir", str(work), "--child", spec]
            running[spec] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        time.sleep(1)
        for spec, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[spec]
            label = spec.replace(":", "_")
            part = work / "parts" / f"{label}.json"
            if proc.returncode != 0 or not part.exists():
                tail = (work / "logs" / f"{label}.log").read_text()[-3000:]
                print(f"run {spec} failed (exit {proc.returncode}):\n{tail}", flush=True)
                failed.append(spec)
                continue
            on_result(spec.split(":")[0], json.loads(part.read_text()))
    return failed


def _child(work: Path, spec: str) -> None:
    s = LearningBenchSettings.from_dict(json.loads((work / "settings.json").read_text()))
    name, seed, *candidate = spec.split(":")
    row = run_branch(work, s, name, int(seed), candidate=int(candidate[0]) if candidate else None)
    (work / "parts").mkdir(exist_ok=True)
    (work / "parts" / f"{spec.replace(':', '_')}.json").write_text(json.dumps(row))


def _run_all(work: Path, s: LearningBenchSettings, runs: list[tuple], on_result) -> list[str]:
    """``runs`` in child processes (``jobs`` > 1) or here, one after the other; the failed ones."""
    if s.jobs > 1:
        return run_children(work, runs, s.jobs, on_result)
    for name, seed, *candidate in runs:
        print(f"branch {name}, seed {seed}" + (f", tuning candidate {candidate[0]}" if candidate else ""), flush=True)
        on_result(name, run_branch(work, s, name, seed, candidate=candidate[0] if candidate else None))
    return []


def tune(work: Path, s: LearningBenchSettings) -> tuple[dict, list[str]]:
    """Train every candidate of ``s.tune`` once with ``tune_seed``; choose per branch the one
    with the best final validation F1@0.5 (the first on a tie) and write the choices to
    ``work/tuned.json``. Returns ``(record, failed runs)``."""
    rows: dict[str, dict[int, dict]] = {}
    runs = [(name, s.tune_seed, i) for name, candidates in s.tune.items() for i in range(len(candidates))]
    failed = _run_all(work, s, runs, lambda name, row: rows.setdefault(name, {}).__setitem__(row["candidate"], row))
    record, chosen = {}, {}
    for name, candidates in s.tune.items():
        finals = [rows.get(name, {}).get(i, {}).get("curve", [{}])[-1].get("val_f1") for i in range(len(candidates))]
        scored = [(f, -i) for i, f in enumerate(finals) if f is not None]
        best = -max(scored)[1] if scored else None
        if best is not None:
            chosen[name] = candidates[best]
        record[name] = {"candidates": candidates, "final_val_f1": finals, "chosen": best,
                        "curves": [rows.get(name, {}).get(i, {}).get("curve") for i in range(len(candidates))]}
        print(f"tuning {name}: validation F1 {finals} -> {candidates[best] if best is not None else 'none'}", flush=True)
    (work / TUNED_FILE).write_text(json.dumps(chosen))
    return record, failed


def negative_weight(data: Path, s: LearningBenchSettings) -> float:
    """Queries without boxes per query with boxes in the training data, over the same ratio
    in the test queries: the weight that turns the test mix into the training mix."""
    from trl_ground.config import DataArguments
    from trl_ground.data.dataset import build_examples
    from trl_ground.data.records import load_records

    records, _ = load_records(data / "train.json", data, check_images=False)
    args = DataArguments(add_negatives=True, negative_fraction=s.negative_fraction, system_prompt=s.system_prompt,
                         query_template=s.query_template)
    rows = build_examples(records, args)
    train_neg = sum(1 for r in rows if r["mode"] == "negative")
    test_pos, test_neg = EvalSet(data, "test", s).query_mix()
    if not (train_neg and test_neg and test_pos):
        return 1.0
    return round((train_neg / (len(rows) - train_neg)) / (test_neg / test_pos), 4)


def time_per_step(work: Path, s: LearningBenchSettings, names: list[str]) -> dict:
    """Seconds per training step of each branch kind, measured alone (one after the other)."""
    out = {}
    for name in names:
        out[name] = run_branch(work, s, name, 0, timing=True)["seconds_per_step"]
        print(f"  {name}: {out[name]} s/step alone", flush=True)
    return out


# ---- the command --------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/learning.json", help="result JSON (a plot is written beside it)")
    ap.add_argument("--quick", action="store_true", help="tiny CPU run (what the tests run)")
    ap.add_argument("--work-dir", help="where data and models go (default: a temporary folder)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting (JSON value), e.g. --set warm_steps=500 (see LearningBenchSettings)")
    ap.add_argument("--export-warm", metavar="DIR", help="write the warm model (bf16) as warm_model.tar.part* files into DIR")
    ap.add_argument("--warm-from", metavar="DIR", help="skip the warm start: a warm model directory or a folder of parts")
    ap.add_argument("--warm-init", metavar="DIR", help="start the warm start from this model (continue an earlier one) instead of random init")
    ap.add_argument("--speed-probe", action="store_true", help="first measure the warm-start step (packed vision attention on/off, a profile)")
    ap.add_argument("--stop-after", choices=("prepare", "probe"), help="stop after preparing data and model, or after the speed probe")
    ap.add_argument("--child", metavar="NAME:SEED", help=argparse.SUPPRESS)  # one branch, in a process of its own
    return ap.parse_args(argv)


def run(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.child:
        _child(Path(args.work_dir), args.child)
        return None
    import torch

    try:
        s = (LearningBenchSettings.quick() if args.quick else LearningBenchSettings()).override(args.set)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_learning_"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": "trl-ground-bench-learning " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "settings": s.as_dict(),
        "branches": {},
    }

    def save():
        out.write_text(json.dumps(result, indent=1) + "\n")

    def on_warm_point(points):
        result["warm_start"] = {"curve": points}
        save()

    start = time.perf_counter()
    reused = reuse_warm(Path(args.warm_from), work, s) if args.warm_from else None  # checked before the data is made
    prepare(work, s)
    result["prepare_s"] = round(time.perf_counter() - start, 1)
    print(f"data and model ready in {result['prepare_s']} s", flush=True)
    if args.speed_probe:
        result["speed_probe"] = speed_probe(work, s, steps=5 if args.quick else 40)
        save()
    if args.stop_after:
        save()
        return result
    if reused:
        if "metrics" not in reused:  # a snapshot: its test metrics, the branches' starting point
            reused.update(evaluate_warm(work, s))
        result["warm_start"] = reused
    else:
        init = unpack_warm(Path(args.warm_init), work / "init_unpacked") if args.warm_init else work / "init"
        result["warm_start"] = warm_start(work, s, init, on_warm_point)
    save()
    if args.export_warm:
        result["warm_start"]["exported"] = [str(p) for p in export_warm(work, Path(args.export_warm))]
        save()

    result["negative_weight"] = negative_weight(work / "data", s)
    failed = []
    if s.tune:
        result["tuning"], failed = tune(work, s)
        save()

    def on_result(name, row):
        result["branches"].setdefault(name, []).append(row)
        result["branches"][name].sort(key=lambda r: r["seed"])
        result["summary"] = summarize(result)
        save()
        print(f"branch {name} seed {row['seed']}: test F1@0.5 {row['metrics']['f1']:.3f} in {row['wall_s']} s", flush=True)

    runs = [(name, seed) for seed in s.seeds for name in s.branches] + [(name, s.seeds[0]) for name in s.variants]
    if runs:
        failed += _run_all(work, s, runs, on_result)
        if s.timing_steps:
            kinds = sorted({base_kind(name, s) for name, _ in runs})
            result["seconds_per_step_alone"] = time_per_step(work, s, kinds)
        result["summary"] = summarize(result)
    if failed:
        result["failed"] = failed
    result["total_wall_s"] = round(time.perf_counter() - start, 1)
    save()
    plot(result, out.with_suffix(".png"))
    print(json.dumps(result.get("summary", {}), indent=1)[:4000])
    if result.get("failed"):
        raise SystemExit(f"runs failed: {result['failed']} (logs under {work / 'logs'})")
    return result


main = benchmark_command(run)


if __name__ == "__main__":
    sys.exit(main())
