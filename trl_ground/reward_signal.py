"""Is there a learning signal in the grounding reward? Statistics of K sampled answers per prompt.

The hybrid loss and GRPO learn only from the differences between the K answers sampled for
one prompt (advantage ``A_i = cost_i - mean cost of the other samples``). Before spending
GPU hours, look at those differences on your SFT model: if every group's answers cost the
same, nothing is learned; if an empty answer (``[]``) costs less than the boxes the model
draws, the gradient teaches the model to stop answering. :func:`signal_report` measures
both for a cost variant; ``scripts/check_reward_signal.py`` samples the answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rewards import score_answers

from .trainer import advantages

__all__ = ["CostVariant", "DEFAULT_VARIANTS", "signal_report"]


@dataclass(frozen=True)
class CostVariant:
    """A way of turning an answer's grounding terms into a cost.

    ``weights`` are ``(a, b, c)`` of ``a*iou_loss + b*fp + c*fn``; ``per_box`` divides the
    counts by the number of predicted / ground-truth boxes (``fp / N``, ``fn / M``).
    """

    name: str
    iou_threshold: float = 0.5
    weights: tuple[float, float, float] = (1.0, 0.5, 1.0)
    per_box: bool = False

    def costs(self, texts: list[str], gts: list) -> tuple[np.ndarray, np.ndarray]:
        """``(cost (R,), n_pred (R,))`` of answers ``texts`` against ``gts`` (``(M, 4)`` xyxy in [0, 1])."""
        a, b, c = self.weights
        scored = score_answers(texts, gts, self.iou_threshold)
        cost, n_pred = [], []
        for s in scored:
            t = s.terms
            fp, fn = (t.fp / max(t.n_pred, 1), t.fn / max(t.n_gt, 1)) if self.per_box else (t.fp, t.fn)
            cost.append(a * t.iou_loss + b * fp + c * fn)
            n_pred.append(t.n_pred)
        return np.array(cost, dtype=np.float64), np.array(n_pred)


DEFAULT_VARIANTS = (
    CostVariant("default"),
    CostVariant("iou_threshold_0.1", iou_threshold=0.1),
    CostVariant("per_box_counts", per_box=True),
    CostVariant("no_fp_weight", weights=(1.0, 0.0, 1.0)),
)


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    return round(float(values.mean()), 4) if values.size else None


def signal_report(texts: list[str], gts: list, k: int, variant: CostVariant = DEFAULT_VARIANTS[0]) -> dict:
    """Statistics of ``texts`` (``P*K`` answers, the K of a prompt consecutive) scored
    against ``gts`` (``P`` ground truths, each ``(M, 4)`` xyxy in [0, 1]).

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
    cost, n_pred = variant.costs(texts, [g for g in gts for _ in range(k)])
    adv = advantages(torch.as_tensor(cost), k, None).numpy().reshape(n_prompts, k)
    cost, empty = cost.reshape(n_prompts, k), n_pred.reshape(n_prompts, k) == 0
    spread = cost.std(axis=1)
    positive = np.array([len(np.asarray(g).reshape(-1, 4)) > 0 for g in gts])
    report = {
        "variant": variant.name,
        "mean_cost": _mean(cost),
        "mean_group_std": _mean(spread),
        "zero_spread_fraction": _mean(spread < 1e-9),
    }
    for name, rows in (("positives", positive), ("negatives", ~positive)):
        c, e, a = cost[rows], empty[rows], adv[rows]
        mixed = e.any(axis=1) & (~e).any(axis=1)
        wins = [bool(e[i][np.argmin(c[i])]) for i in np.flatnonzero(mixed)]
        report[name] = {
            "prompts": int(rows.sum()),
            "empty_fraction": _mean(e),
            "cost_empty": _mean(c[e]),
            "cost_boxes": _mean(c[~e]),
            "advantage_empty": _mean(a[e]),
            "empty_wins": _mean(wins),
        }
    return report
