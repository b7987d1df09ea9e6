"""Speculative sampling drafted from the ground truth: exact samples, fewer decode steps.

On a training step the target answer of every prompt is known, and a model that has learned
the format follows it for long stretches (the JSON skeleton, the label, boxes it already
gets right). Each decode step here feeds, per row, the last sampled token and ``block``
draft tokens taken from the target answer, and accepts a prefix of the drafts with the
standard speculative rule for a deterministic draft (draft distribution = a point mass):

- draft ``d_i`` is accepted with probability ``p_i(d_i)``, ``p_i`` the model's (processed)
  next-token distribution after the accepted prefix;
- at the first rejection the token is drawn from ``p_i`` with ``d_i`` removed (renormalized),
  which is the residual ``max(0, p - q)`` of the rule; if all drafts pass, one more token
  is drawn from the last distribution.

So every sample has exactly the distribution of plain sampling (``tests`` check it with a
chi-square test), and a decode step emits between 1 and ``block + 1`` tokens. Greedy
decoding accepts a draft iff it is the argmax. The drafts come from "prompt lookup" in the
target: the target's continuation after the last place where the row's last ``match``
tokens occur in it (after the first box that differs, the next ``", "``, label and box
realign), else the target from the row's current length.

Rows accept different numbers of tokens, so the KV cache gets ``block + 1`` new slots per
step for every row and an explicit attention mask ``(R, 1, q, L)`` hides each row's rejected
slots; the positions (3D M-RoPE, text tokens) follow each row's own accepted length. This
version decodes eagerly with a ``DynamicCache`` (no CUDA graph): it measures acceptance and
steps on models that write the format; a graph-captured verify step is future work
(``benchmarks/NOTES_step.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .batches import PromptBatch, Samples
from .decoding import SamplerBase, TokenRule, base_model, cache_kwarg, prefill

__all__ = ["SpeculativeSampler", "SpeculativeStats", "lookup_drafts", "speculative_accept", "speculative_sample"]


@dataclass
class SpeculativeStats:
    """What a call did: ``decode_steps`` forward passes after the prefill; over all rows,
    ``drafted`` and ``accepted`` draft tokens, ``row_steps`` decode steps of rows still
    writing, and ``emitted`` answer tokens those steps produced."""

    decode_steps: int = 0
    drafted: int = 0
    accepted: int = 0
    row_steps: int = 0
    emitted: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def tokens_per_step(self) -> float:
        """Answer tokens a row gains per decode step (plain decoding: 1)."""
        return self.emitted / self.row_steps if self.row_steps else float("nan")


def speculative_accept(probs: torch.Tensor, drafts: torch.Tensor, do_sample: bool = True, generator=None):
    """The acceptance rule for point-mass drafts.

    Args:
        probs: ``(R, k + 1, V)`` the model's processed next-token distributions: ``probs[:, i]``
            after the accepted prefix and the first ``i`` drafts.
        drafts: ``(R, k)`` draft tokens.
        do_sample: False: greedy (a draft passes iff it is the argmax).

    Returns:
        ``(n_accepted (R,), next_token (R,))``: the first ``n_accepted`` drafts are kept and
        ``next_token`` follows them (drawn from the residual after a rejection, from
        ``probs[:, k]`` after ``k`` acceptances).
    """
    rows, k = drafts.shape
    p_draft = probs[:, :k].gather(2, drafts.unsqueeze(2)).squeeze(2)  # (R, k)
    if do_sample:
        u = torch.rand(p_draft.shape, device=probs.device, generator=generator)
        passed = u < p_draft
    else:
        passed = probs[:, :k].argmax(dim=2) == drafts
    n_accepted = passed.long().cumprod(dim=1).sum(dim=1)  # length of the accepted prefix
    at = probs[torch.arange(rows, device=probs.device), n_accepted]  # (R, V) distribution of the next token
    rejected = n_accepted < k
    if rejected.any():
        residual = at.clone()
        rejected_draft = drafts.gather(1, n_accepted.clamp(max=k - 1).unsqueeze(1)).squeeze(1)
        residual[rejected, rejected_draft[rejected]] = 0.0
        at = torch.where(rejected.unsqueeze(1), residual, at)
    if do_sample:
        next_token = torch.multinomial(at / at.sum(dim=1, keepdim=True), 1, generator=generator).squeeze(1)
    else:
        next_token = at.argmax(dim=1)
    return n_accepted, next_token


def lookup_drafts(generated: list[list[int]], targets: list[list[int]], block: int, match: int = 2) -> torch.Tensor:
    """``(R, block)`` draft tokens per row from its target answer (prompt lookup).

    The continuation of ``targets[r]`` after the last occurrence of the row's last ``match``
    generated tokens (fewer when the row is shorter); without one, the target from the row's
    current length. Past the target's end the drafts repeat its last token (a draft only has
    to be a function of the prefix for the samples to stay exact)."""
    out = []
    for gen, target in zip(generated, targets):
        start = None
        n = min(match, len(gen))
        if n:
            tail = gen[-n:]
            for j in range(len(target) - n, -1, -1):
                if target[j : j + n] == tail:
                    start = j + n
                    break
        if start is None:
            start = len(gen)
        draft = target[start : start + block]
        fill = target[-1] if target else 0
        out.append(draft + [fill] * (block - len(draft)))
    return torch.tensor(out, dtype=torch.long)


def speculative_sample(
    model,
    prompts: PromptBatch,
    tokenizer,
    targets: Sequence[Sequence[int]],
    k: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    do_sample: bool = True,
    min_new_tokens: int = 0,
    block: int = 4,
    match: int = 2,
) -> tuple[Samples, SpeculativeStats]:
    """:meth:`SpeculativeSampler.sample` as a function: the samples and what the decoding did."""
    sampler = SpeculativeSampler(block, match)
    samples = sampler.sample(model, prompts, tokenizer, k=k, temperature=temperature, max_new_tokens=max_new_tokens,
                             do_sample=do_sample, min_new_tokens=min_new_tokens, targets=targets)
    return samples, sampler.last_stats


class SpeculativeSampler(SamplerBase):
    """Samples ``k`` answers per prompt (the contract of :class:`trl_ground.sampling.samplers.Sampler`)
    drafting from ``targets``, the target answer's token ids per prompt (end token included
    or not), which it needs on every call (the trainer passes the batch's target answers).
    Decodes eagerly, with a ``DynamicCache``.

    Args:
        block: draft tokens verified per decode step.
        match: tokens matched to realign the drafts on the target (:func:`lookup_drafts`).

    Attributes:
        last_stats: what the latest call did (:class:`SpeculativeStats`; None before one).
    """

    uses_targets = True

    def __init__(self, block: int = 4, match: int = 2):
        self.block, self.match = block, match
        self.last_stats: SpeculativeStats | None = None

    def _decode(self, model, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, row_targets: list[list[int]] | None):
        from transformers import DynamicCache

        if row_targets is None or len(row_targets) != len(rows):
            raise ValueError("the speculative sampler drafts from one target answer per prompt: "
                             f"{len(rows)} answers to sample, {0 if row_targets is None else len(row_targets)} targets")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        block, eos, device = self.block, rule.end_ids, rows.input_ids.device
        base = base_model(model)
        n_rows = len(rows)
        cache = DynamicCache(config=base.config)
        cache_kw = cache_kwarg(base)
        self.last_stats = stats = SpeculativeStats()

        logits, rope_deltas = prefill(base, rows, cache, cache_kw)
        last = rule.pick(logits, ban_end=rule.min_new_tokens > 0)
        generated = [[int(t)] for t in last]
        done = torch.isin(last, rule.end) | (max_new_tokens <= 1)
        valid = rows.attention_mask.bool()  # (R, slots) which cache slots each row attends to
        text_len = rows.attention_mask.sum(dim=1)  # (R,) valid prompt tokens

        while not bool(done.all()):
            drafts = lookup_drafts(generated, row_targets, block, self.match).to(device)
            step_ids = torch.cat([last.unsqueeze(1), drafts], dim=1)  # (R, block + 1)
            q = block + 1
            lengths = torch.tensor([len(g) for g in generated], device=device)
            position = (text_len + lengths - 1).unsqueeze(1) + torch.arange(q, device=device)  # text index of each input
            position_ids = (position + rope_deltas).unsqueeze(0).expand(3, -1, -1)
            causal = torch.ones(q, q, dtype=torch.bool, device=device).tril()
            mask = torch.cat([valid.unsqueeze(1).expand(-1, q, -1), causal.unsqueeze(0).expand(n_rows, -1, -1)], dim=2)
            out = base(input_ids=step_ids, position_ids=position_ids, attention_mask=mask.unsqueeze(1), use_cache=True, **{cache_kw: cache})
            stats.decode_steps += 1
            no_end = (lengths.unsqueeze(1) + torch.arange(q, device=device)) < rule.min_new_tokens  # (R, q)
            n_accepted, next_token = speculative_accept(rule.probs(out.logits, no_end), drafts, rule.do_sample)
            new_valid = torch.zeros(n_rows, q, dtype=torch.bool, device=device)
            new_valid[:, 0] = True  # the fed last token is an accepted one
            new_valid[:, 1:] = torch.arange(block, device=device).unsqueeze(0) < n_accepted.unsqueeze(1)
            new_valid &= ~done.unsqueeze(1)
            valid = torch.cat([valid, new_valid], dim=1)
            for r in range(n_rows):
                if done[r]:
                    continue
                emitted = drafts[r, : int(n_accepted[r])].tolist() + [int(next_token[r])]
                stats.drafted += block
                stats.row_steps += 1
                before = len(generated[r])
                for token in emitted:
                    if len(generated[r]) >= max_new_tokens:
                        break
                    generated[r].append(token)
                    if token in eos:
                        done[r] = True
                        break
                stats.emitted += len(generated[r]) - before
                stats.accepted += min(int(n_accepted[r]), len(generated[r]) - before)  # drafts kept, not cut by an end
                if len(generated[r]) >= max_new_tokens:
                    done[r] = True
            last = torch.tensor([g[-1] for g in generated], device=device)

        tokens = torch.full((n_rows, max(len(g) for g in generated)), rule.pad_token_id, dtype=torch.long, device=device)
        for r, g in enumerate(generated):
            tokens[r, : len(g)] = torch.tensor(g, device=device)
        return tokens, None
