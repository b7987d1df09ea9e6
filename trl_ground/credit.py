"""Box-level credit: which advantage each token of a sampled answer carries.

With sequence-level credit every token of answer ``i`` carries the answer's advantage
``A_i = cost_i - baseline_i``: a good box in an answer that also holds a bad one is pushed
down with it. With box-level credit (the default, with the dense cost) the tokens are split
by what they decide, in the answer's characters (:func:`rewards.layout.answer_layout`):

- **a box** (from just after the previous object, or after ``[``, through its ``}``: the
  separator that decided to continue the list belongs to the box it opened) carries
  ``b - q_j``: the group's typical box quality ``b`` minus the box's matched quality ``q_j``
  (:class:`rewards.DenseScore`; 0 for an unmatched or duplicate box, so such a box is pushed
  down). ``b`` is the mean quality of all boxes of the prompt's K answers, or a running mean
  when K = 1. On a prompt without boxes every box carries 1.
- **the closing** ``]`` (from the end of the last object through ``]``) carries
  ``A_i + (m_i - m)``: ``m_i`` is the fraction of the ``M`` ground-truth boxes the answer
  left without a box, ``m`` its mean over the prompt's K answers (K = 1: ``m = m_i``).
  Closing earlier than the group's other answers is pushed down, closing later raised; the
  correction is relative, so on a prompt every answer under-covers, ``]`` is not pushed
  down for all of them (an absolute penalty taught a random model never to close a list).
  On a prompt without boxes it carries ``A_i``.
- **everything else** (the opening ``[``, the end token, answers that are not a list of box
  objects) carries ``A_i``.

All values are costs (lower is better), as in :mod:`trl_ground.policy_gradient`; the
surrogate's value stays 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from rewards import ScoredAnswer
from rewards.layout import AnswerLayout, answer_layout

__all__ = ["GroupBaselines", "box_baselines", "missing_fraction", "segment_costs", "token_advantages", "token_char_ends"]


class GroupBaselines(NamedTuple):
    """Per answer, what its group (the prompt's K answers) typically does.

    Attributes:
        box_quality: ``(R,)`` the baseline ``b`` of a box's matched quality.
        missing: ``(R,)`` the mean fraction ``m`` of ground-truth boxes left without a box.
    """

    box_quality: np.ndarray
    missing: np.ndarray


def missing_fraction(scored: ScoredAnswer) -> float:
    """The fraction of the ground-truth boxes the answer left without a box (0 without any)."""
    return scored.dense.n_missing / scored.dense.n_gt if scored.dense.n_gt else 0.0


def box_baselines(scored: list[ScoredAnswer], k: int, running: float | None) -> GroupBaselines:
    """The baselines of each answer's group (K consecutive answers). ``box_quality``: the
    mean matched quality over all boxes of the group (K > 1), or ``running`` when K = 1 (the
    group's own mean before there is one; 0 when the group has no box). ``missing``: the
    group's mean missing fraction (K = 1: the answer's own, so the closing carries ``A_i``)."""
    quality, missing = np.zeros(len(scored)), np.zeros(len(scored))
    for g in range(0, len(scored), k):
        group = scored[g : g + k]
        qualities = np.concatenate([s.dense.box_quality for s in group])
        if k == 1 and running is not None:
            quality[g : g + k] = running
        else:
            quality[g : g + k] = float(qualities.mean()) if qualities.size else 0.0
        missing[g : g + k] = float(np.mean([missing_fraction(s) for s in group]))
    return GroupBaselines(quality, missing)


_REST = 1 << 62  # the end of the last segment: the rest of the text


def segment_costs(
    scored: ScoredAnswer, layout: AnswerLayout | None, answer_adv: float, baseline: float, missing_baseline: float
) -> list[tuple[int, float]]:
    """The answer's characters as consecutive segments ``[(end, cost advantage), ...]``
    (each segment runs from the previous end; the last one covers the rest of the text).
    A single segment with ``answer_adv`` when the layout does not match the parsed boxes.
    ``baseline`` and ``missing_baseline``: the group's ``b`` and ``m`` (:class:`GroupBaselines`)."""
    dense = scored.dense
    if layout is None or dense is None or len(layout.objects) != len(dense.box_quality):
        return [(_REST, answer_adv)]
    m = dense.n_gt
    segments = [(layout.open_end, answer_adv)]
    for (_, end), quality in zip(layout.objects, dense.box_quality):
        segments.append((end, 1.0 if m == 0 else baseline - float(quality)))
    if layout.close is not None:
        segments.append((layout.close + 1, answer_adv + missing_fraction(scored) - missing_baseline))
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
    baselines: GroupBaselines,
    completion_ids: torch.Tensor,
    mask: torch.Tensor,
    tokenizer,
) -> tuple[torch.Tensor, float]:
    """``(R, T)`` cost advantage of each answer token, and the fraction of answers whose
    boxes were located (the others carry their answer's advantage on every token).

    Args:
        scored: ``R`` answers scored with their dense scores.
        texts: the ``R`` decoded answers.
        answer_adv: ``(R,)`` sequence-level cost advantages ``A_i``.
        baselines: the groups' baselines (:func:`box_baselines`).
        completion_ids: ``(R, T)`` the answers' tokens.
        mask: ``(R, T)`` 1 on the answers' tokens.
        tokenizer: decodes single tokens (to place them in the text).
    """
    answer = answer_adv.detach().float().cpu().numpy()  # one device sync for the batch
    out = np.repeat(answer[:, None], mask.shape[1], axis=1)
    ends, pieces = token_char_ends(completion_ids, mask, tokenizer)
    located, offset = 0, 0
    for i, (s, text, row_ends) in enumerate(zip(scored, texts, ends)):
        n = len(row_ends)
        row_pieces, offset = pieces[offset : offset + n], offset + n
        if "".join(row_pieces) != text:
            continue
        layout = answer_layout(text)
        segments = segment_costs(s, layout, float(answer[i]), float(baselines.box_quality[i]), float(baselines.missing[i]))
        if len(segments) == 1:  # not a list of box objects: the answer's advantage everywhere
            continue
        located += 1
        bounds = np.array([end for end, _ in segments])
        values = np.array([value for _, value in segments])
        # A token belongs to the segment of its last character that is not white space (Qwen
        # merges "}" or "]" with the line break after it); a blank token to that of its last.
        trailing = np.array([len(p) - len(p.rstrip()) for p in row_pieces])
        blank = trailing == np.array([len(p) for p in row_pieces])
        last_char = np.maximum(row_ends - 1 - np.where(blank, 0, trailing), 0)
        seg = np.searchsorted(bounds, last_char, side="right")
        row_values = values[np.minimum(seg, len(values) - 1)]
        empty = np.diff(np.concatenate([[0], row_ends])) == 0  # special tokens (the end token)
        row_values[empty] = answer[i]
        out[i, :n] = row_values
    return torch.from_numpy(out).to(device=answer_adv.device, dtype=torch.float32), located / max(len(scored), 1)
