"""The few lines ``make demo`` / ``make demo-grpo`` end with: what was trained, what the model
learned, judged on the demo test set by the project's evaluation (``trl-ground-eval``'s
``metrics.json``) and on the training log, said in plain words, and where everything is."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["grpo_summary", "sft_summary"]

# Below this F1@0.5 on the prompts with boxes, the model is said not to locate objects.
LOCATES = 0.05


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _num(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "trainer_state.json"
    return json.loads(path.read_text())["log_history"] if path.exists() else []


def _first_last(history: list[dict], key: str):
    values = [r[key] for r in history if key in r]
    return (values[0], values[-1]) if values else (None, None)


def _runtime(history: list[dict]) -> str:
    seconds = next((r["train_runtime"] for r in reversed(history) if "train_runtime" in r), None)
    return "" if seconds is None else f" in {seconds:.0f} s"


def _verdict(m: dict) -> str:
    """The plain-words reading of ``metrics.json``."""
    pos, neg = m.get("with_boxes", {}), m.get("without_boxes", {})
    f1, empty = pos.get("f1"), pos.get("empty_fraction_positive")
    hallucinated, unparseable = neg.get("hallucination_fraction_negative"), m.get("unparseable_fraction")
    if unparseable is not None and unparseable < 0.1 and empty is not None and empty >= 0.9 and (hallucinated or 0.0) <= 0.1:
        return (f"it has learned the answer format, and answers [] (no box) to nearly every prompt: right for the absent "
                f"classes, wrong for the {_pct(empty)} of the prompts with boxes it leaves empty; it does not locate objects "
                f"(F1@0.5 {_num(f1)})")
    said = []
    if unparseable is not None:
        said.append("it has not learned the answer format yet" if unparseable > 0.5
                    else "it writes answers in the right format" if unparseable < 0.1
                    else f"it writes well-formed answers most of the time ({_pct(unparseable)} unparseable)")
    if f1 is not None and f1 < LOCATES:
        where = f"; no box at all for {_pct(empty)} of the prompts with boxes" if empty else ""
        said.append(f"it does not locate objects (F1@0.5 {_num(f1)} on the prompts with boxes{where})")
    elif f1 is not None:
        said.append(f"it finds some of the objects (F1@0.5 {_num(f1)} on the prompts with boxes)")
    if hallucinated is not None:
        said.append(f"it draws boxes for {_pct(hallucinated)} of the absent classes it is asked about")
    return "; ".join(said)


def sft_summary(run_dir, metrics_path=None, outputs_path=None, pictures=None) -> str:
    """The summary of the SFT demo in ``run_dir``, from its ``trainer_state.json``, the
    evaluation ``metrics_path`` (default ``run_dir/metrics.json``), the answers
    ``outputs_path`` and the ``pictures`` folder."""
    run_dir = Path(run_dir)
    metrics_path = Path(metrics_path or run_dir / "metrics.json")
    m = json.loads(metrics_path.read_text())
    history = _history(run_dir)
    steps = max((r.get("step", 0) for r in history), default=0)
    lm = _first_last(history, "lm_loss")
    unparseable = _first_last(history, "unparseable_fraction")
    pos, neg = m["with_boxes"], m["without_boxes"]
    final = run_dir / "final"
    how = "LoRA adapters" if (final / "adapter_config.json").exists() else "every weight (full fine-tuning)"
    lines = ["", "==== demo summary ====",
             f"Trained {how} of the tiny random Qwen3-VL for {steps} steps{_runtime(history)} on synthetic images.",
             f"Training log: lm_loss {_num(lm[0])} -> {_num(lm[1])}; sampled answers that do not parse "
             f"{_pct(unparseable[0])} -> {_pct(unparseable[1])}.",
             f"Demo test set ({m['counts'].get('examples', '?')} queries, greedy answers, trl-ground-eval):",
             f"  prompts with boxes ({pos['queries']}): F1@0.5 {_num(pos['f1'])}, precision {_num(pos['precision'])}, "
             f"recall {_num(pos['recall'])}, empty answers {_pct(pos['empty_fraction_positive'])}",
             f"  prompts without boxes ({neg['queries']}): answered with boxes {_pct(neg['hallucination_fraction_negative'])} "
             f"({neg['pred_boxes']} boxes in all)",
             f"  unparseable answers: {_pct(m.get('unparseable_fraction'))} of all queries",
             f"In plain words: {_verdict(m)}."]
    if pos.get("f1") is not None and pos["f1"] < LOCATES:
        lines.append("That is expected: a model trained from random weights for a CPU minute can learn the answer format and "
                     "when to answer [], not where the objects are. A real Qwen3-VL starts out able to locate objects: see "
                     "the README's 'Your first real run'.")
    lines.append("Where things are:")
    where = [("model", final), ("answers", outputs_path or run_dir / "outputs.json"), ("metrics", metrics_path),
             ("pictures (green: ground truth, dashed red: prediction)", pictures or run_dir / "pictures"),
             ("training curves", run_dir / "training.png")]
    lines += [f"  {name}: {path}" for name, path in where if Path(path).exists()]
    return "\n".join(lines)


def grpo_summary(run_dir) -> str:
    """The summary of the GRPO demo in ``run_dir`` (from its ``trainer_state.json``): was there
    a learning signal (groups whose answers' rewards differ, a non-zero gradient)?"""
    run_dir = Path(run_dir)
    history = [r for r in _history(run_dir) if "frac_reward_zero_std" in r]
    if not history:
        return f"no GRPO log in {run_dir} (trainer_state.json)"
    zero_std = [r["frac_reward_zero_std"] for r in history]
    grad = [r.get("grad_norm", 0.0) for r in history]
    reward = _first_last(history, "reward")
    lines = ["", "==== GRPO demo summary ====",
             f"{history[-1]['step']} steps{_runtime(_history(run_dir))}; mean reward {_num(reward[0])} -> {_num(reward[1])} "
             f"(grounding reward = minus the hybrid loss's cost, plus the format reward)."]
    mean_zero = sum(zero_std) / len(zero_std)
    if mean_zero < 1.0 and max(grad) > 0:
        lines.append(f"Learning signal: in {_pct(1 - mean_zero)} of the groups the answers' rewards differed "
                     f"(frac_reward_zero_std {_num(mean_zero)} on average), and the gradient norm reached {max(grad):.3g}.")
        lines.append("In plain words: GRPO had answers to compare and moved the model; a few CPU steps on a tiny model do "
                     "not make it locate objects.")
    else:
        lines.append("No learning signal: every group's answers earned the same reward (frac_reward_zero_std 1), so the "
                     "loss and the gradient are 0. This happens when the model answers the same way every time, e.g. a "
                     "random model whose answers never parse; start from the SFT demo's model (make demo first).")
    lines.append(f"Model: {run_dir / 'final'}")
    return "\n".join(lines)
