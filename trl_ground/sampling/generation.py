"""Sampling with ``model.generate``: :class:`GenerateSampler` (the plain path, and the one
under FSDP / ZeRO-3), and greedy answers with per-token log-probabilities for prediction.

The faster samplers with the same contract are
:class:`trl_ground.sampling.static.StaticSampler` and
:class:`trl_ground.sampling.speculative.SpeculativeSampler` (:mod:`trl_ground.sampling.samplers`).
"""

from __future__ import annotations

import torch

from .batches import PromptBatch, Samples
from .decoding import SamplerBase, TokenRule, completion_mask_until_eos, eval_mode

__all__ = ["GenerateSampler", "generate_with_logprobs", "sample_answers"]


class GenerateSampler(SamplerBase):
    """Samples with ``model.generate`` (KV cache, no gradient): works with any model and any
    parameter placement, one Python step per token. Stateless; ignores ``targets``."""

    def _decode(self, model, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, row_targets=None):
        out = model.generate(**rows.model_inputs(), **rule.generate_kwargs(), max_new_tokens=max_new_tokens)
        return out[:, rows.input_ids.shape[1] :], None


def sample_answers(
    model,
    prompts: PromptBatch,
    tokenizer,
    k: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    do_sample: bool = True,
    min_new_tokens: int = 0,
) -> Samples:
    """``k`` answers per prompt with ``model.generate``: :meth:`GenerateSampler.sample` as a
    function. ``min_new_tokens`` forces that many tokens before the end token (benchmarks pin
    the answer length this way)."""
    return GenerateSampler().sample(
        model, prompts, tokenizer, k=k, temperature=temperature, max_new_tokens=max_new_tokens, do_sample=do_sample, min_new_tokens=min_new_tokens
    )


def generate_with_logprobs(model, prompts: PromptBatch, tokenizer, max_new_tokens: int):
    """Greedy answers with the log-probability of each chosen token (for confidences).

    Returns:
        ``(ids (R, T), mask (R, T), truncated (R,), logprobs (R, T))``.
    """
    rule = TokenRule.of(model, tokenizer, do_sample=False)
    with torch.no_grad(), eval_mode(model):
        out = model.generate(
            **prompts.model_inputs(), **rule.generate_kwargs(), max_new_tokens=max_new_tokens, output_scores=True, return_dict_in_generate=True
        )
    ids = out.sequences[:, prompts.input_ids.shape[1] :]
    scores = torch.stack(out.scores, dim=1).float()  # (R, T, vocab), after suppression
    logprobs = torch.log_softmax(scores, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    mask, truncated = completion_mask_until_eos(ids, rule.end_ids)
    return ids, mask, truncated, logprobs
