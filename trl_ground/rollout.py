"""One rollout of a hybrid step: the sampled answers of a batch, their scores and costs, and
the metrics that are logged about them. Pure functions of what was sampled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rewards import ScoredAnswer, ScoringSettings

from .batches import Samples
from .policy_gradient import flat_groups

__all__ = ["Rollout", "answers_with_boxes", "rollout_metrics", "score_rollout", "split_metrics"]


@dataclass
class Rollout:
    """K answers per prompt for ``B`` prompts (``R = B * K`` rows, the K of a prompt consecutive).

    Attributes:
        samples: the answers and their tokens.
        scored: ``R`` parsed answers with their grounding terms.
        cost: ``(R,)`` float32, each answer's cost under the scoring settings.
        k: answers per prompt.
        gt_boxes: ``R`` ground truths, each ``(M, 4)`` xyxy in [0, 1].
        seconds: wall-clock time of the sampling.
    """

    samples: Samples
    scored: list[ScoredAnswer]
    cost: torch.Tensor
    k: int
    gt_boxes: list
    seconds: float = 0.0


def score_rollout(samples: Samples, gt_boxes: list, query_classes: list, k: int, scoring: ScoringSettings, seconds: float = 0.0) -> Rollout:
    """Score ``samples`` (``B * K`` answers) against the ``B`` prompts' ``gt_boxes``
    (``(M, 4)`` xyxy in [0, 1]) and ``query_classes`` (used with label-aware matching)."""
    gts = [g for g in gt_boxes for _ in range(k)]
    classes = [c for c in query_classes for _ in range(k)]
    scored = scoring.score(samples.texts, gts, query_labels=classes)
    device = samples.completion_ids.device
    cost = torch.tensor([scoring.answer_cost(s) for s in scored], dtype=torch.float32, device=device)
    return Rollout(samples, scored, cost, k, gts, seconds)


def group_std(cost: torch.Tensor, k: int) -> float:
    """Mean over prompts of the cost's spread among their ``k`` answers (0 when k = 1): with
    no spread, the policy-gradient term has no signal."""
    return float(cost.view(-1, k).std(dim=1, unbiased=False).mean()) if k > 1 else 0.0


def answers_with_boxes(rollout: Rollout) -> np.ndarray:
    """``(R,)`` bool: whether each answer's prompt has ground-truth boxes."""
    return np.array([len(np.asarray(g).reshape(-1, 4)) > 0 for g in rollout.gt_boxes], dtype=bool)


def rollout_metrics(rollout: Rollout) -> dict[str, float]:
    """The logged means over the rollout's answers (see the README's list of logged metrics).
    ``flat_group_fraction``: the share of prompts whose K answers all cost the same (no
    policy-gradient signal; left out of the policy term with ``drop_flat_groups``), NaN when
    K = 1."""
    terms = [s.terms for s in rollout.scored]
    n = max(len(terms), 1)
    cost = rollout.cost
    return {
        "iou_loss": float(np.mean([t.iou_loss for t in terms])),
        "fp_loss": float(np.mean([t.fp for t in terms])),
        "fn_loss": float(np.mean([t.fn for t in terms])),
        "f1": float(np.mean([t.f1 for t in terms])),
        "precision": float(np.mean([t.precision for t in terms])),
        "recall": float(np.mean([t.recall for t in terms])),
        "grounding_cost": float(cost.mean()),
        "grounding_cost_std": float(cost.std(unbiased=False)),
        "grounding_cost_group_std": group_std(cost, rollout.k),
        "flat_group_fraction": float(flat_groups(cost, rollout.k).float().mean()) if rollout.k > 1 else float("nan"),
        "sampled_tokens": rollout.samples.num_tokens / n,
        "truncated_fraction": float(rollout.samples.truncated.float().mean()),
        "unparseable_fraction": float(np.mean([not s.parsed.valid_json and len(s.parsed) == 0 for s in rollout.scored])),
        "sample_seconds": rollout.seconds,
    }


def split_metrics(rollout: Rollout) -> dict[str, float]:
    """The rollout's answers split by prompt type, so that a mean over both cannot mislead
    (an empty answer is a perfect answer to a prompt without boxes):

    ``f1_positive``, ``precision_positive``, ``recall_positive``: means over the answers whose
    prompt has boxes; ``empty_fraction_positive``: the share of those answers with no box;
    ``hallucination_fraction_negative``: the share of the answers to prompts without boxes
    that hold a box. A value over no answer is NaN (the trainer leaves it out of its means).
    """
    positive = answers_with_boxes(rollout)
    terms = [s.terms for s in rollout.scored]
    n_boxes = np.array([len(s.parsed) for s in rollout.scored])

    def mean_over(mask, values) -> float:
        values = np.asarray(values, dtype=np.float64)
        return float(values[mask].mean()) if mask.any() else float("nan")

    return {
        "f1_positive": mean_over(positive, [t.f1 for t in terms]),
        "precision_positive": mean_over(positive, [t.precision for t in terms]),
        "recall_positive": mean_over(positive, [t.recall for t in terms]),
        "empty_fraction_positive": mean_over(positive, n_boxes == 0),
        "hallucination_fraction_negative": mean_over(~positive, n_boxes > 0),
    }
