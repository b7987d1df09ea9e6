"""The learning benchmark's summary and plot, from its result JSON (no training here).

:func:`summarize` gives, per branch, the test metrics as mean +- std over seeds, the
comparison at equal wall-clock, and the paired comparisons (:mod:`.paired`): every branch
against SFT, the default hybrid against each control, with bootstrap intervals over test
queries x seeds. :func:`goal` reads them against the benchmark's targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trl_ground.config.benchmark import LearningBenchSettings

from .paired import paired_bootstrap

__all__ = ["CONTROLS", "METRIC_KEYS", "base_kind", "goal", "plot", "summarize"]

METRIC_KEYS = ("f1", "precision", "recall", "mean_iou", "ap50", "f1_positive", "precision_positive", "recall_positive",
               "mean_iou_positive", "ap50_positive", "empty_fraction_positive", "hallucination_fraction_negative",
               "duplicate_fraction", "unparseable_fraction", "tokens_per_answer")
# Branches the default hybrid must beat besides SFT: sampling without a gradient, and the
# same gradient noise without the reward's signal.
CONTROLS = ("literal", "shuffled")


def _stats(values: list[float]) -> dict:
    v = np.array([x for x in values if x is not None], dtype=float)
    if not v.size:
        return {"mean": None, "std": None}
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if v.size > 1 else 0.0, 4)}


def _value_at_step(curve: list[dict], step: float, start: float | None) -> float | None:
    """Validation F1 at ``step``, linearly interpolated on the curve whose step 0 is the warm
    start's ``start`` (None when the curve does not reach ``step``)."""
    points = ([(0, start)] if start is not None else []) + [(p["step"], p["val_f1"]) for p in curve]
    if not points or step > points[-1][0] + 1e-9 or step < points[0][0]:
        return None
    xs, ys = zip(*points)
    return round(float(np.interp(step, xs, ys)), 4)


def base_kind(name: str, s: LearningBenchSettings) -> str:
    """The branch a variant trains like (a branch is its own)."""
    return s.variants[name]["base"] if name in s.variants else name


def _paired(result: dict, base: str, other: str) -> dict | None:
    branches = result["branches"]
    runs_a, runs_b = branches.get(base, []), branches.get(other, [])
    if not runs_a or not runs_b or not all("per_query" in r for r in runs_a + runs_b):
        return None
    s = result["settings"]
    return paired_bootstrap(runs_a, runs_b, result.get("negative_weight", 1.0), s.get("bootstrap", 2000))


def summarize(result: dict) -> dict:
    """Per branch: metrics as mean +- std over seeds; the SFT std as the noise band; each
    branch's F1 difference to SFT; equal-wall-clock F1; paired comparisons with intervals
    (``paired``: each branch against SFT; ``hybrid_vs_<control>``); :func:`goal`."""
    out = {}
    for name, runs in result["branches"].items():
        out[name] = {"seeds": len(runs), "steps": _stats([r["steps"] for r in runs])}
        for key in METRIC_KEYS:
            out[name][key] = _stats([r["metrics"].get(key) for r in runs])
    sft = out.get("sft")
    noise = sft["f1"]["std"] if sft else None
    for name, row in out.items():
        if sft and name != "sft" and row["f1"]["mean"] is not None and sft["f1"]["mean"] is not None:
            row["f1_minus_sft"] = round(row["f1"]["mean"] - sft["f1"]["mean"], 4)
            row["exceeds_sft_noise"] = bool(noise is not None and abs(row["f1_minus_sft"]) > noise)
    _equal_wall_clock(result, out)
    paired = {name: _paired(result, "sft", name) for name in result["branches"] if name != "sft"}
    for control in CONTROLS:
        paired[f"hybrid_vs_{control}"] = _paired(result, control, "hybrid") if "hybrid" in result["branches"] else None
    summary = {"noise_band_f1": noise, "branches": out, "paired": {k: v for k, v in paired.items() if v}}
    summary["goal"] = goal(result, summary)
    return summary


def _equal_wall_clock(result: dict, out: dict) -> None:
    per_step = result.get("seconds_per_step_alone") or {}
    warm_curve = result.get("warm_start", {}).get("curve") or []
    start = warm_curve[-1]["val_f1"] if warm_curve else None
    if "sft" not in result["branches"] or not per_step.get("sft"):
        return
    budget = per_step["sft"] * result["settings"]["branch_steps"]
    settings = LearningBenchSettings.from_dict(result["settings"])  # old result files: old setting names
    for name, runs in result["branches"].items():
        base = base_kind(name, settings)
        if per_step.get(base):
            # the step this branch reaches in SFT's time, on its own validation curve
            steps_in_budget = budget / per_step[base]
            at = [_value_at_step(r["curve"], steps_in_budget, start) for r in runs]
            out[name]["equal_wall_clock"] = {"seconds": round(budget, 1), "steps": round(steps_in_budget, 1), "val_f1": _stats(at)}


def goal(result: dict, summary: dict) -> dict:
    """The benchmark's targets, each True / False (None where not measured):
    SFT still learns (>= 10 F1 points over the warm start); the hybrid >= SFT + 5 F1 points
    with the 95 % interval above 0; its empty answers on prompts with boxes <= SFT's + 2
    points and its hallucination on prompts without boxes <= SFT's; it beats each control
    (interval above 0); the shuffled control does not beat SFT (interval not above 0)."""
    paired = summary["paired"]
    warm_f1 = (result.get("warm_start") or {}).get("metrics", {}).get("f1")
    sft_f1 = summary["branches"].get("sft", {}).get("f1", {}).get("mean")
    vs_sft = paired.get("hybrid")
    out = {
        "sft_gain_over_warm_start": None if warm_f1 is None or sft_f1 is None else round(sft_f1 - warm_f1, 4),
        "sft_still_learns": None if warm_f1 is None or sft_f1 is None else sft_f1 - warm_f1 >= 0.10,
    }
    if vs_sft:
        out["hybrid_minus_sft_f1"] = vs_sft["f1"]
        out["hybrid_beats_sft_by_5_points"] = vs_sft["f1"]["difference"] >= 0.05 and (vs_sft["f1"]["low"] or 0) > 0
        out["empty_within_sft_plus_2_points"] = vs_sft["empty_fraction_positive"]["difference"] <= 0.02
        out["hallucination_within_sft"] = vs_sft["hallucination_fraction_negative"]["difference"] <= 0
    for control in CONTROLS:
        row = paired.get(f"hybrid_vs_{control}")
        if row:
            out[f"hybrid_beats_{control}"] = (row["f1"]["low"] or 0) > 0
    shuffled = paired.get("shuffled")
    if shuffled:
        out["shuffled_does_not_beat_sft"] = not ((shuffled["f1"]["low"] or 0) > 0)
    return out


def plot(result: dict, path: Path) -> None:
    """Left: the warm start's validation F1; right: each branch's (one line per seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (warm_ax, ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    warm = result.get("warm_start", {})
    if warm.get("curve"):
        warm_ax.plot([p["step"] for p in warm["curve"]], [p["val_f1"] for p in warm["curve"]], color="k", marker="o")
    warm_ax.set(xlabel="warm-start steps (plain SFT)", ylabel="validation F1@0.5", title="warm start")
    start = (warm.get("curve") or [{}])[-1].get("val_f1")
    for i, (name, runs) in enumerate(result["branches"].items()):
        for j, r in enumerate(runs):
            points = [(0, start)] if start is not None else []
            points += [(p["step"], p["val_f1"]) for p in r["curve"]]
            ax.plot(*zip(*points), label=name if j == 0 else None, color=f"C{i}", alpha=0.8, linestyle="-" if j == 0 else "--")
    ax.set(xlabel="steps after the warm start", ylabel="validation F1@0.5", title="branches (one line per seed)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
