"""Is there a learning signal in the grounding reward? Statistics of K sampled answers per prompt.

The hybrid loss and GRPO learn only from the differences between the K answers sampled for
one prompt (advantage ``A_i = cost_i - mean cost of the other samples``). Before spending
GPU hours, look at those differences on your SFT model: if every group's answers cost the
same, nothing is learned; if an empty answer (``[]``) costs less than the boxes the model
draws, the gradient teaches the model to stop answering. :func:`signal_report` measures
both for a cost variant; ``scripts/check_reward_signal.py`` samples the answers.
"""

from __future__ import annotations

import numpy as np
import torch

from rewards import ScoringSettings

from .policy_gradient import advantages

__all__ = ["DEFAULT_VARIANTS", "conclusion", "signal_report"]

# Cost variants compared by the report: name -> scoring settings.
DEFAULT_VARIANTS: dict[str, ScoringSettings] = {
    "dense": ScoringSettings(cost="dense"),
    "dense_max_norm": ScoringSettings(cost="dense", dense_norm="max"),
    "dense_iou_only": ScoringSettings(cost="dense", giou_weight=0.0),
    "counts": ScoringSettings(cost="counts"),
    "counts_iou0.1": ScoringSettings(cost="counts", iou_threshold=0.1),
}


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    return round(float(values.mean()), 4) if values.size else None


def signal_report(texts: list[str], gts: list, k: int, settings: ScoringSettings | None = None, name: str = "default") -> dict:
    """Statistics of ``texts`` (``P*K`` answers, the K of a prompt consecutive) scored
    against ``gts`` (``P`` ground truths, each ``(M, 4)`` xyxy in [0, 1]) with the cost of
    ``settings`` (reported under ``name``).

    Returns ``mean_cost``; ``mean_group_std`` (spread of the cost among a prompt's K
    answers) and ``zero_spread_fraction`` (prompts whose K answers all cost the same: no
    gradient); then for ``positives`` (prompts with boxes) and ``negatives`` (target ``[]``):
    ``prompts``, ``empty_fraction`` (answers with no box), ``cost_empty`` / ``cost_boxes``
    (mean cost of answers without / with boxes), ``advantage_empty`` (mean advantage of the
    answers without boxes: negative means the policy gradient makes ``[]`` more likely) and
    ``empty_wins`` (of the prompts with both kinds of answer, the fraction whose cheapest
    answer is ``[]``).
    """
    if k < 2 or len(texts) % k:
        raise ValueError(f"need K >= 2 answers per prompt and len(texts) a multiple of K, got K={k}, {len(texts)} answers")
    n_prompts = len(texts) // k
    if len(gts) != n_prompts:
        raise ValueError(f"{len(gts)} ground truths for {n_prompts} prompts")
    settings = settings if settings is not None else ScoringSettings()
    scored = settings.score(texts, [g for g in gts for _ in range(k)])
    cost = np.array([settings.answer_cost(s) for s in scored], dtype=np.float64)
    n_pred = np.array([len(s.parsed) for s in scored])
    adv = advantages(torch.as_tensor(cost), k, None).numpy().reshape(n_prompts, k)
    cost, empty = cost.reshape(n_prompts, k), n_pred.reshape(n_prompts, k) == 0
    spread = cost.std(axis=1)
    positive = np.array([len(np.asarray(g).reshape(-1, 4)) > 0 for g in gts])
    report = {
        "variant": name,
        "mean_cost": _mean(cost),
        "mean_group_std": _mean(spread),
        "zero_spread_fraction": _mean(spread < 1e-9),
    }
    for side, rows in (("positives", positive), ("negatives", ~positive)):
        c, e, a = cost[rows], empty[rows], adv[rows]
        mixed = e.any(axis=1) & (~e).any(axis=1)
        wins = [bool(e[i][np.argmin(c[i])]) for i in np.flatnonzero(mixed)]
        report[side] = {
            "prompts": int(rows.sum()),
            "empty_fraction": _mean(e),
            "cost_empty": _mean(c[e]),
            "cost_boxes": _mean(c[~e]),
            "advantage_empty": _mean(a[e]),
            "empty_wins": _mean(wins),
        }
    return report


def conclusion(reports: list[dict]) -> str:
    """One or two plain sentences on ``reports`` (rows of :func:`signal_report` with a
    ``temperature``), judged on the first variant (the default cost) at the temperature whose
    answers differ most: is there a signal, and does it favour ``[]`` on prompts with boxes?"""
    if not reports:
        return "No report: nothing was sampled."
    variant = reports[0]["variant"]
    rows = [r for r in reports if r["variant"] == variant]
    best = min(rows, key=lambda r: (r["zero_spread_fraction"] if r["zero_spread_fraction"] is not None else 1.0))
    at = f"under the {variant!r} cost at temperature {best.get('temperature')}"
    spread = best["zero_spread_fraction"]
    pos = best["positives"]
    if spread is not None and spread >= 0.8:
        return (f"No learning signal {at}: the K answers of {spread:.0%} of the prompts all cost the same, so the "
                "grounding loss (or GRPO) has nothing to compare; sample more answers (--k) or at a higher temperature, "
                "or train SFT longer first.")
    wins, adv = pos.get("empty_wins"), pos.get("advantage_empty")
    if wins is not None and wins >= 0.5 and (adv is None or adv < 0):
        return (f"The signal favours silence {at}: on prompts with boxes, an empty answer [] is the cheapest answer "
                f"in {wins:.0%} of the groups that hold one, so the grounding loss would teach this model to answer []; "
                "train SFT until it draws mostly correct boxes first.")
    wins_text = "never sampled with boxes alongside" if wins is None else f"cheapest in only {wins:.0%} of its groups"
    return (f"There is a learning signal {at}: the answers of {1 - (spread or 0.0):.0%} of the prompts differ in cost, "
            f"and on prompts with boxes [] is {wins_text}; the grounding loss can be turned on.")
