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
  ``max(A_i, missing / M)``: closing the list while ``missing`` of the ``M`` ground-truth
  boxes have no box is pushed down; otherwise it carries the answer's advantage.
- **everything else** (the opening ``[``, the end token, answers that are not a list of box
  objects) carries ``A_i``.

All values are costs (lower is better), as in :mod:`trl_ground.policy_gradient`; the
surrogate's value stays 0.
"""

from __future__ import annotations

import numpy as np
import torch

from rewards import ScoredAnswer
from rewards.layout import AnswerLayout, answer_layout

__all__ = ["box_baselines", "segment_costs", "token_advantages", "token_char_ends"]


def box_baselines(scored: list[ScoredAnswer], k: int, running: float | None) -> np.ndarray:
    """``(R,)`` the box-quality baseline ``b`` of each answer's group (K consecutive answers):
    the mean matched quality over all boxes of the group (K > 1), or ``running`` when K = 1
    (the group's own mean before there is one; 0 when the group has no box)."""
    out = np.zeros(len(scored))
    for g in range(0, len(scored), k):
        qualities = np.concatenate([s.dense.box_quality for s in scored[g : g + k]])
        if k == 1 and running is not None:
            out[g : g + k] = running
        else:
            out[g : g + k] = float(qualities.mean()) if qualities.size else 0.0
    return out


_REST = 1 << 62  # the end of the last segment: the rest of the text


def segment_costs(scored: ScoredAnswer, layout: AnswerLayout | None, answer_adv: float, baseline: float) -> list[tuple[int, float]]:
    """The answer's characters as consecutive segments ``[(end, cost advantage), ...]``
    (each segment runs from the previous end; the last one covers the rest of the text).
    A single segment with ``answer_adv`` when the layout does not match the parsed boxes."""
    dense = scored.dense
    if layout is None or dense is None or len(layout.objects) != len(dense.box_quality):
        return [(_REST, answer_adv)]
    m = dense.n_gt
    segments = [(layout.open_end, answer_adv)]
    for (_, end), quality in zip(layout.objects, dense.box_quality):
        segments.append((end, 1.0 if m == 0 else baseline - float(quality)))
    if layout.close is not None:
        segments.append((layout.close + 1, answer_adv if m == 0 else max(answer_adv, dense.n_missing / m)))
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
    baselines: np.ndarray,
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
        baselines: ``(R,)`` box-quality baselines (:func:`box_baselines`).
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
        segments = segment_costs(s, layout, float(answer[i]), float(baselines[i]))
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
