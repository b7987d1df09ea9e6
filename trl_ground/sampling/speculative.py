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
slots; the positions (3D M-RoPE, text tokens) follow each row's own accepted length. The
verify step has a fixed shape (``q = block + 1`` tokens per row, a static cache long enough
for the at most ``max_new_tokens - 1`` steps of ``q`` slots after the prefill: about ``q``
times the static sampler's KV cache, and every verify step attends over all of it), so it
is run like the static sampler's decode
step (:class:`~trl_ground.sampling.static.DecodeGraphs`): compiled when asked, captured
in a CUDA graph once per shape on CUDA and replayed; the acceptance rule and the drafts run
outside the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .batches import PromptBatch, Samples
from .decoding import SamplerBase, TokenRule, base_model, cache_kwarg, prefill, sampling_dtype
from .static import DecodeGraphs

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

    Args:
        block: draft tokens verified per decode step.
        match: tokens matched to realign the drafts on the target (:func:`lookup_drafts`).
        merged_weights: verify with the LoRA linears merged into dense matrices (as the static
            sampler; the samples then hold their tokens' ``sampler_logprobs``).
        use_cuda_graph, compile, compile_devices, bucket, max_states: how the verify step runs
            (:class:`~trl_ground.sampling.static.DecodeGraphs`).

    Attributes:
        last_stats: what the latest call did (:class:`SpeculativeStats`; None before one).
    """

    uses_targets = True

    def __init__(self, block: int = 4, match: int = 2, merged_weights: bool = False, use_cuda_graph: bool = True,
                 compile: bool = False, compile_devices: tuple[str, ...] = ("cuda",), bucket: int = 128, max_states: int = 4):
        self.block, self.match = block, match
        self.merged_weights = merged_weights
        self.graphs = DecodeGraphs(use_cuda_graph, compile, compile_devices, bucket, max_states)
        self.last_stats: SpeculativeStats | None = None

    def _decode(self, model, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, row_targets: list[list[int]] | None):
        if row_targets is None or len(row_targets) != len(rows):
            raise ValueError("the speculative sampler drafts from one target answer per prompt: "
                             f"{len(rows)} answers to sample, {0 if row_targets is None else len(row_targets)} targets")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        block, eos, device = self.block, rule.end_ids, rows.input_ids.device
        q = block + 1
        base = base_model(model)
        n_rows, prompt_len = rows.input_ids.shape
        # every step gains each unfinished row >= 1 token after the prefill's first: <= max_new_tokens - 1 steps
        state = self.graphs.state(base, n_rows, q, prompt_len + max(max_new_tokens - 1, 1) * q, device, sampling_dtype(base, device))
        cache_kw = cache_kwarg(base)
        self.last_stats = stats = SpeculativeStats()

        logits, rope_deltas = prefill(base, rows, state.cache, cache_kw)
        first = rule.pick(logits, ban_end=rule.min_new_tokens > 0)
        generated = [[t] for t in first.tolist()]
        logprobs = [[lp] for lp in _token_logprobs(logits, first).tolist()] if self.merged_weights else None
        done = [g[0] in eos or max_new_tokens <= 1 for g in generated]  # host-side: one copy per step
        valid = torch.zeros(n_rows, state.length, dtype=torch.bool, device=device)  # the cache slots each row attends to
        valid[:, :prompt_len] = rows.attention_mask.bool()
        slot = prompt_len  # where this step's q tokens go in the cache
        text_len = rows.attention_mask.sum(dim=1)  # (R,) valid prompt tokens
        causal = torch.ones(q, q, dtype=torch.bool, device=device).tril()
        steps = torch.arange(q, device=device)

        while not all(done):
            drafts = lookup_drafts(generated, row_targets, block, self.match)  # (R, block), host
            fed = torch.cat([torch.tensor([[g[-1]] for g in generated]), drafts], dim=1)
            lengths = torch.tensor([len(g) for g in generated]).to(device)
            state.input_ids.copy_(fed)  # (R, q)
            position = (text_len + lengths - 1).unsqueeze(1) + steps  # text index of each input
            state.position_ids.copy_((position + rope_deltas).unsqueeze(0).expand(3, -1, -1))
            state.mask[:, 0] = valid.unsqueeze(1)
            state.mask[:, 0, :, slot : slot + q] = causal
            logits = self.graphs.step(base, state, cache_kw)  # (R, q, V)
            stats.decode_steps += 1
            no_end = (lengths.unsqueeze(1) + steps) < rule.min_new_tokens  # (R, q)
            n_accepted, next_token = speculative_accept(rule.probs(logits, no_end), drafts.to(device), rule.do_sample)
            if logprobs is not None:  # of the emitted tokens: drafts[:n] then next_token at position n
                emitted = torch.cat([drafts.to(device), next_token.unsqueeze(1)], dim=1)
                emitted.scatter_(1, n_accepted.unsqueeze(1), next_token.unsqueeze(1))
                step_logprobs = _token_logprobs(logits, emitted).tolist()
            new_valid = torch.zeros(n_rows, q, dtype=torch.bool, device=device)
            new_valid[:, 0] = True  # the fed last token is an accepted one
            new_valid[:, 1:] = steps[:block].unsqueeze(0) < n_accepted.unsqueeze(1)
            new_valid[torch.tensor(done, device=device)] = False  # rows already ended keep nothing
            valid[:, slot : slot + q] = new_valid
            slot += q
            for r, (n_acc, nxt, draft) in enumerate(zip(n_accepted.tolist(), next_token.tolist(), drafts.tolist())):
                if done[r]:
                    continue
                stats.drafted += block
                stats.row_steps += 1
                before = len(generated[r])
                for i, token in enumerate(draft[:n_acc] + [nxt]):
                    if len(generated[r]) >= max_new_tokens:
                        break
                    generated[r].append(token)
                    if logprobs is not None:
                        logprobs[r].append(step_logprobs[r][i])
                    if token in eos:
                        done[r] = True
                        break
                stats.emitted += len(generated[r]) - before
                stats.accepted += min(n_acc, len(generated[r]) - before)  # drafts kept, not cut by an end
                if len(generated[r]) >= max_new_tokens:
                    done[r] = True

        width = max(len(g) for g in generated)
        tokens = torch.tensor([g + [rule.pad_token_id] * (width - len(g)) for g in generated], dtype=torch.long)
        if logprobs is not None:
            logprobs = torch.tensor([lp + [0.0] * (width - len(lp)) for lp in logprobs]).to(device)
        return tokens.to(device), logprobs


def _token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probabilities at temperature 1, before any suppression, of ``tokens`` (``(R,)`` or
    ``(R, q)``) under ``logits`` (``(R, V)`` or ``(R, q, V)``): what the static sampler records."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
