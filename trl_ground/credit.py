"""Box-level credit: which advantage each token of a sampled answer carries.

With sequence-level credit every token of answer ``i`` carries the answer's advantage
``A_i = cost_i - baseline_i``: a good box in an answer that also holds a bad one is pushed
down with it. With box-level credit (the default, with the dense cost) the tokens are split
by what they decide, in the answer's characters (:func:`rewards.layout.answer_layout`):

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

All values are costs (lower is better), as in :mod:`trl_ground.policy_gradient`; the
surrogate's value stays 0.
"""

from __future__ import annotations

import numpy as np
import torch

from rewards import ScoredAnswer
from rewards.dense import marginal_contributions
from rewards.layout import AnswerLayout, answer_layout

__all__ = ["segment_costs", "token_advantages", "token_char_ends"]

_REST = 1 << 62  # the end of the last segment: the rest of the text


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
    """``(R, T)`` cost advantage of each answer token, and the fraction of answers whose
    boxes were located (the others carry their answer's advantage on every token).

    Args:
        scored: ``R`` answers scored with their dense scores.
        texts: the ``R`` decoded answers.
        answer_adv: ``(R,)`` sequence-level cost advantages ``A_i``.
        completion_ids: ``(R, T)`` the answers' tokens.
        mask: ``(R, T)`` 1 on the answers' tokens.
        tokenizer: decodes single tokens (to place them in the text).
        norm: the dense score's normalization (``ScoringSettings.dense_norm``).
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
    return torch.from_numpy(out).to(device=answer_adv.device, dtype=torch.float32), located / max(len(scored), 1)
