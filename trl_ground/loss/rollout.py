"""One rollout of a hybrid step, collected once before the loss: the sampled answers of a
batch, their scores and costs, the advantage each answer token carries, which answers take
part in the policy term, and the metrics logged about them. No model here: pure functions
of what was sampled, on the CPU (one transfer of the advantages to the device at the end).

Which advantage each token carries (box-level credit, the default with the dense cost).
With sequence-level credit every token of answer ``i`` carries the answer's advantage
``A_i = cost_i - baseline_i``: a good box in an answer that also holds a bad one is pushed
down with it. With box-level credit the tokens are split by what they decide, in the
answer's characters (:func:`rewards.layout.answer_layout`):

- **the list's opening**, from the start of the answer through the first object's ``{``
  (and the whole token that holds that ``{``): the decision to answer with boxes at all,
  carries ``A_i``;
- **a box** (after that: from the end of the previous object, or just after box 1's ``{``,
  through its ``}``; the separator that decided to continue the list belongs to the box it
  opened) carries ``-Delta_j``, minus its marginal contribution to the answer's dense score,
  ``Delta_j = score(answer) - score(answer without box j)`` with the other boxes' matches
  fixed (:func:`rewards.dense.marginal_contributions`): a box that raises the score is pushed
  up, whatever the quality of the other answers' boxes, an unmatched or duplicate box down.
  On a prompt without boxes every box carries 1;
- **the closing** ``]`` and everything after the last object (the end token, text after the
  list) carry ``A_i``; so does every token of ``[]`` and of an answer that is not a list of
  box objects.

All values are costs (lower is better), as in :mod:`trl_ground.loss.policy_gradient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rewards import ScoredAnswer, ScoringSettings
from rewards.dense import marginal_contributions
from rewards.layout import AnswerLayout, answer_layout

from ..sampling.batches import Samples
from .policy_gradient import advantages, flat_groups, permute_answers

__all__ = [
    "CreditSettings",
    "Rollout",
    "assign_advantages",
    "rollout_metrics",
    "score_rollout",
    "segment_costs",
    "split_metrics",
    "token_advantages",
    "token_char_ends",
]

_REST = 1 << 62  # the end of the last segment: the rest of the text


@dataclass
class Rollout:
    """K answers per prompt for ``B`` prompts (``R = B * K`` rows, the K of a prompt consecutive).

    Attributes:
        samples: the answers and their tokens.
        scored: ``R`` parsed answers with their grounding terms.
        cost: ``(R,)`` float32 on the CPU, each answer's cost under the scoring settings.
        k: answers per prompt.
        gt_boxes: ``R`` ground truths, each ``(M, 4)`` xyxy in [0, 1].
        seconds: wall-clock time of the sampling.
        has_boxes: ``(R,)`` bool on the CPU, whether each answer's prompt has ground-truth boxes.
        advantages: after :func:`assign_advantages`: ``(R,)`` answer or ``(R, T)`` token cost
            advantages (no gradient), on the device of the samples; None before.
        keep: after :func:`assign_advantages`: ``(R,)`` bool, the answers that take part in
            the policy term, on the device of the samples; None before.
        box_credit_fraction: the share of answers whose boxes were located for box credit
            (None without box credit).
    """

    samples: Samples
    scored: list[ScoredAnswer]
    cost: torch.Tensor
    k: int
    gt_boxes: list
    seconds: float = 0.0
    has_boxes: torch.Tensor = field(init=False)
    advantages: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    box_credit_fraction: float | None = None

    def __post_init__(self):
        self.has_boxes = torch.tensor([len(np.asarray(g).reshape(-1, 4)) > 0 for g in self.gt_boxes], dtype=torch.bool)


@dataclass
class CreditSettings:
    """How the rollout's costs become advantages (the trainer's options of the same names).

    Attributes:
        box_credit: each box's tokens carry its own credit (needs answers scored with the
            dense cost).
        dense_norm: the dense score's normalization (``ScoringSettings.dense_norm``).
        drop_flat_groups: with K > 1, prompts whose K answers all cost the same take no part.
        shuffle: permute the advantage rows among the answers (a benchmark control), drawing
            from ``generator``.
    """

    box_credit: bool = True
    dense_norm: str = "f1"
    drop_flat_groups: bool = True
    shuffle: bool = False
    generator: torch.Generator | None = None


def score_rollout(samples: Samples, gt_boxes: list, query_classes: list, k: int, scoring: ScoringSettings, seconds: float = 0.0) -> Rollout:
    """Score ``samples`` (``B * K`` answers) against the ``B`` prompts' ``gt_boxes``
    (``(M, 4)`` xyxy in [0, 1]) and ``query_classes`` (used with label-aware matching)."""
    gts = [g for g in gt_boxes for _ in range(k)]
    classes = [c for c in query_classes for _ in range(k)]
    scored = scoring.score(samples.texts, gts, query_labels=classes)
    cost = torch.tensor([scoring.answer_cost(s) for s in scored], dtype=torch.float32)
    return Rollout(samples, scored, cost, k, gts, seconds)


def assign_advantages(rollout: Rollout, running_baseline: torch.Tensor | None, settings: CreditSettings, tokenizer=None) -> Rollout:
    """Fill ``rollout.advantages`` and ``rollout.keep`` (see :class:`Rollout`).

    Args:
        rollout: a scored rollout.
        running_baseline: ``(R,)`` each answer's K = 1 baseline
            (:meth:`~trl_ground.loss.policy_gradient.PromptTypeBaselines.per_answer`); None when K > 1.
        settings: the credit settings; box credit needs ``tokenizer`` (to place tokens in the
            text) and answers scored with the dense cost.
    """
    if settings.box_credit and tokenizer is None:
        raise ValueError("box credit needs the tokenizer (to place the answer tokens in the text)")
    adv = advantages(rollout.cost, rollout.k, running_baseline)
    samples = rollout.samples
    if settings.box_credit:
        adv, rollout.box_credit_fraction = token_advantages(
            rollout.scored, samples.texts, adv, samples.completion_ids, samples.completion_mask, tokenizer, settings.dense_norm
        )
    keep = torch.ones(len(rollout.cost), dtype=torch.bool)
    if settings.drop_flat_groups and rollout.k > 1:
        keep = ~flat_groups(rollout.cost, rollout.k).repeat_interleave(rollout.k)
        adv = adv * keep.view(-1, *[1] * (adv.dim() - 1))
    if settings.shuffle:
        adv, keep = permute_answers(adv, keep, settings.generator)
    device = samples.completion_ids.device
    rollout.advantages, rollout.keep = adv.to(device), keep.to(device)
    return rollout

def segment_costs(scored: ScoredAnswer, layout: AnswerLayout | None, answer_adv: float, norm: str = "f1") -> list[tuple[int, float]] | None:
    """The answer's characters as consecutive segments ``[(end, cost advantage), ...]``
    (each segment runs from the previous end; the last one covers the rest of the text), or
    None when the answer's boxes cannot be located (no layout, or not the parsed boxes).

    Args:
        scored: the answer, scored with its dense score.
        layout: where its objects are (:func:`rewards.layout.answer_layout`).
        answer_adv: its sequence-level cost advantage ``A_i``.
        norm: the dense score's normalization (``ScoringSettings.dense_norm``).
    """
    dense = scored.dense
    if layout is None or dense is None or len(layout.objects) != len(dense.box_quality):
        return None
    if not layout.objects:
        return [(_REST, answer_adv)]
    box_costs = np.ones(len(layout.objects)) if dense.n_gt == 0 else -marginal_contributions(dense, norm)
    segments = [(layout.objects[0][0] + 1, answer_adv)]
    segments += [(end, float(cost)) for (_, end), cost in zip(layout.objects, box_costs)]
    return segments + [(_REST, answer_adv)]


def token_char_ends(completion_ids: torch.Tensor, mask: torch.Tensor, tokenizer) -> tuple[list[np.ndarray], list[str]]:
    """``(ends, pieces)``: per answer, the character offset where each of its tokens ends in
    the text rebuilt from single-token decodes (special tokens add no characters), and those
    decoded pieces, all answers' in a row (one tokenizer call for the batch)."""
    rows = completion_ids.tolist()
    lengths = mask.sum(dim=1).tolist()
    flat = [[tok] for row, n in zip(rows, lengths) for tok in row[:n]]
    pieces = tokenizer.batch_decode(flat, skip_special_tokens=True) if flat else []
    out, start = [], 0
    for row, n in zip(rows, lengths):
        row_pieces = pieces[start : start + n]
        start += n
        out.append(np.cumsum([len(p) for p in row_pieces], dtype=np.int64) if n else np.zeros(0, dtype=np.int64))
    return out, pieces


def token_advantages(
    scored: list[ScoredAnswer],
    texts: list[str],
    answer_adv: torch.Tensor,
    completion_ids: torch.Tensor,
    mask: torch.Tensor,
    tokenizer,
    norm: str = "f1",
) -> tuple[torch.Tensor, float]:
    """``(R, T)`` cost advantage of each answer token (on the CPU), and the fraction of answers
    whose boxes were located (the others carry their answer's advantage on every token).

    Args:
        scored: ``R`` answers scored with their dense scores.
        texts: the ``R`` decoded answers.
        answer_adv: ``(R,)`` sequence-level cost advantages ``A_i``.
        completion_ids: ``(R, T)`` the answers' tokens.
        mask: ``(R, T)`` 1 on the answers' tokens.
        tokenizer: decodes single tokens (to place them in the text).
        norm: the dense score's normalization (``ScoringSettings.dense_norm``).
    """
    answer = answer_adv.detach().float().cpu().numpy()
    out = np.repeat(answer[:, None], mask.shape[1], axis=1)
    ends, pieces = token_char_ends(completion_ids, mask, tokenizer)
    located, offset = 0, 0
    for i, (s, text, row_ends) in enumerate(zip(scored, texts, ends)):
        n = len(row_ends)
        row_pieces, offset = pieces[offset : offset + n], offset + n
        if "".join(row_pieces) != text:
            continue
        layout = answer_layout(text)
        segments = segment_costs(s, layout, float(answer[i]), norm)
        if segments is None:  # not a list of box objects: the answer's advantage everywhere
            continue
        located += 1
        if len(segments) == 1:
            continue
        bounds = np.array([end for end, _ in segments])
        values = np.array([value for _, value in segments])
        # A token belongs to the segment of its last character that is not white space (Qwen
        # merges "}" or "]" with the line break after it); a blank token to that of its last.
        lengths = np.array([len(p) for p in row_pieces])
        trailing = lengths - np.array([len(p.rstrip()) for p in row_pieces])
        blank = trailing == lengths
        last_char = np.maximum(row_ends - 1 - np.where(blank, 0, trailing), 0)
        seg = np.searchsorted(bounds, last_char, side="right")
        row_values = values[np.minimum(seg, len(values) - 1)]
        # ... except that a token starting in the list's opening is part of the decision to
        # answer with boxes (Qwen writes the first box's brace as '{"')
        row_values[row_ends - lengths < bounds[0]] = answer[i]
        empty = np.diff(np.concatenate([[0], row_ends])) == 0  # special tokens (the end token)
        row_values[empty] = answer[i]
        out[i, :n] = row_values
    return torch.from_numpy(out).to(dtype=torch.float32), located / max(len(scored), 1)


def group_std(cost: torch.Tensor, k: int) -> float:
    """Mean over prompts of the cost's spread among their ``k`` answers (0 when k = 1): with
    no spread, the policy-gradient term has no signal."""
    return float(cost.view(-1, k).std(dim=1, unbiased=False).mean()) if k > 1 else 0.0


def rollout_metrics(rollout: Rollout) -> dict[str, float]:
    """The logged means over the rollout's answers (see the README's list of logged metrics).
    ``flat_group_fraction``: the share of prompts whose K answers all cost the same (no
    policy-gradient signal; left out of the policy term with ``drop_flat_groups``), NaN when
    K = 1. ``box_credit_fraction``: see :class:`Rollout` (NaN without box credit)."""
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
        "box_credit_fraction": float("nan") if rollout.box_credit_fraction is None else rollout.box_credit_fraction,
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
    positive = rollout.has_boxes.numpy()
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
