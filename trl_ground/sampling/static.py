"""The in-loop sampler: a static KV cache and a decode step replayed from a CUDA graph.

``model.generate`` spends most of a decode step in Python and kernel launches at training
batch sizes (about 90-140 ms per token for the 8B model on an H200, BENCHMARKS.md, against a
memory floor of a few ms), and transformers does not compile the decode step of a
bitsandbytes model. This sampler:

1. prefills the prompts (eagerly; images included; :func:`trl_ground.sampling.decoding.prefill`)
   into a ``StaticCache`` whose length is rounded up to a bucket, so that steps with other prompt lengths reuse it;
2. captures one decode step (``[R, 1]`` tokens, 3D M-RoPE positions, a ``[R, 1, 1, L]``
   attention mask, all in fixed buffers) in a CUDA graph once per ``(rows, bucket)``, and
   replays it per token; on a CPU, or if capture fails, the same step runs eagerly;
3. picks each token outside the graph with :class:`trl_ground.sampling.decoding.TokenRule`, the exact
   arithmetic of ``generate`` (image tokens and, before ``min_new_tokens``, end tokens
   suppressed; temperature, then ``softmax`` + ``multinomial``; ``argmax`` when greedy);
4. stops as soon as every row has ended (checked every few tokens, to avoid a sync per step).

Graphs hold pointers to the weights: LoRA weights updated in place by the optimizer stay
valid, so a graph is captured once per shape and reused for the whole run.

With ``merged_weights`` the LoRA linears run as single dense matrices while sampling
(:mod:`trl_ground.sampling.merged_weights`, refreshed before each call, their buffers also captured
once) and the samples carry their tokens' log-probabilities under that sampling model.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext

import torch
from transformers import StaticCache

from .batches import PromptBatch
from .decoding import SamplerBase, TokenRule, base_model, cache_kwarg, prefill, sampling_dtype
from .merged_weights import MergedSamplingWeights

__all__ = ["StaticSampler", "UniformDtypeStaticCache"]

logger = logging.getLogger(__name__)

_STOP_CHECK_EVERY = 8


class UniformDtypeStaticCache(StaticCache):
    """A ``StaticCache`` that stores keys and values in ``kv_dtype``. Under autocast an fp32
    model's keys come out of its fp32 ``k_norm`` in fp32 while its values come out of a bf16
    linear; a cache created from the first ones (transformers' lazy initialization) then
    refuses the others (``index_copy_``: Float and BFloat16)."""

    def __init__(self, config, max_cache_len: int, kv_dtype: torch.dtype):
        super().__init__(config=config, max_cache_len=max_cache_len)
        self.kv_dtype = kv_dtype

    def update(self, key_states, value_states, *args, **kwargs):
        return super().update(key_states.to(self.kv_dtype), value_states.to(self.kv_dtype), *args, **kwargs)


class _DecodeState:
    """Buffers and (optionally) the CUDA graph of one ``(rows, cache length, dtype)`` shape."""

    def __init__(self, model, rows: int, length: int, device, dtype):
        self.rows, self.length = rows, length
        self.cache = UniformDtypeStaticCache(model.config, length, dtype)
        self.input_ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.position_ids = torch.zeros((3, rows, 1), dtype=torch.long, device=device)
        self.mask = torch.zeros((rows, 1, 1, length), dtype=torch.bool, device=device)
        self.logits = None
        self.graph = None
        self.graph_failed = False

    def reset(self) -> None:
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", False):
                layer.cumulative_length.zero_()
                layer.keys.zero_()
                layer.values.zero_()
        self.mask.zero_()


class StaticSampler(SamplerBase):
    """Samples answers for :class:`~trl_ground.sampling.batches.PromptBatch` es, reusing its caches
    and graphs across calls. One instance per model (the trainer keeps one).

    Args:
        use_cuda_graph: capture the decode step when the model is on CUDA.
        bucket: cache lengths are rounded up to a multiple of this.
        max_states: caches (and graphs) kept for this many ``(rows, length)`` shapes, the
            least recently used dropped first.
        merged_weights: sample with the LoRA linears merged into dense matrices
            (:class:`~trl_ground.sampling.merged_weights.MergedSamplingWeights`); the samples then
            hold ``sampler_logprobs``.
    """

    def __init__(self, use_cuda_graph: bool = True, bucket: int = 128, max_states: int = 4, merged_weights: bool = False):
        self.use_cuda_graph = use_cuda_graph
        self.max_states = max_states
        self.bucket = bucket
        self.merged_weights = merged_weights
        self._states: dict[tuple, _DecodeState] = {}
        self._merged: MergedSamplingWeights | None = None

    def _decode(self, model, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, row_targets=None):
        """:meth:`~trl_ground.sampling.decoding.SamplerBase._decode`: log-probabilities with merged weights only."""
        merged = self._merged_weights_of(model, rows.input_ids.device) if self.merged_weights else None
        with merged.active() if merged else nullcontext():
            return self._decode_steps(base_model(model), rows, rule, max_new_tokens, with_logprobs=merged is not None)

    def _merged_weights_of(self, model, device) -> MergedSamplingWeights:
        """The merged matrices of ``model`` (made on first use), refreshed from its current
        adapters; in the autocast dtype when sampling runs under autocast."""
        if self._merged is None:
            self._merged = MergedSamplingWeights(model, sampling_dtype(model, device))
            logger.info("merged sampling weights: %.2f GB", self._merged.nbytes / 1e9)
        self._merged.refresh()
        return self._merged

    # ---- internals -------------------------------------------------------------------
    def _state(self, base, rows: int, length: int, device, dtype) -> _DecodeState:
        key = (rows, length, str(device), dtype)
        if key not in self._states:
            if len(self._states) >= self.max_states:  # bound the memory held by caches of old shapes
                self._states.pop(next(iter(self._states)))
            self._states[key] = _DecodeState(base, rows, length, device, dtype)
        state = self._states.pop(key)
        self._states[key] = state  # most recently used last
        state.reset()
        return state

    def _decode_steps(self, base, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, with_logprobs: bool = False):
        """``(tokens (R, T), their log-probabilities (R, T) at temperature 1 or None)``."""
        device = rows.input_ids.device
        n_rows, prompt_len = rows.input_ids.shape
        length = int(math.ceil((prompt_len + max_new_tokens) / self.bucket) * self.bucket)
        state = self._state(base, n_rows, length, device, sampling_dtype(base, device))
        cache_kw = cache_kwarg(base)

        logits, rope_deltas = prefill(base, rows, state.cache, cache_kw)
        next_text_index = rows.attention_mask.sum(dim=1, keepdim=True)  # (R, 1) valid prompt tokens
        state.mask[:, 0, 0, :prompt_len] = rows.attention_mask.bool()

        out_tokens = torch.full((n_rows, max_new_tokens), rule.pad_token_id, dtype=torch.long, device=device)
        out_logprobs = torch.zeros((n_rows, max_new_tokens), device=device) if with_logprobs else None
        done = torch.zeros(n_rows, dtype=torch.bool, device=device)
        produced = 0
        for t in range(max_new_tokens):
            logp = torch.log_softmax(logits.float(), dim=-1) if with_logprobs else None  # before suppression
            token = rule.pick(logits, ban_end=t < rule.min_new_tokens)
            if with_logprobs:
                out_logprobs[:, t] = logp.gather(1, token.unsqueeze(1)).squeeze(1)
            token = torch.where(done, torch.full_like(token, rule.pad_token_id), token)
            out_tokens[:, t] = token
            done |= torch.isin(token, rule.end)
            produced = t + 1
            if t == max_new_tokens - 1 or ((t + 1) % _STOP_CHECK_EVERY == 0 and bool(done.all())):
                break
            state.input_ids.copy_(token.unsqueeze(1))
            state.position_ids.copy_((next_text_index + t + rope_deltas).unsqueeze(0).expand(3, -1, -1))
            state.mask[:, 0, 0, prompt_len + t] = True
            logits = self._step(base, state, cache_kw)
        return out_tokens[:, :produced], (out_logprobs[:, :produced] if with_logprobs else None)

    def _forward_step(self, base, state: _DecodeState, cache_kw: str) -> torch.Tensor:
        out = base(
            input_ids=state.input_ids,
            position_ids=state.position_ids,
            attention_mask=state.mask,
            use_cache=True,
            logits_to_keep=1,
            **{cache_kw: state.cache},
        )
        return out.logits[:, -1]

    def _step(self, base, state: _DecodeState, cache_kw: str) -> torch.Tensor:
        if not (self.use_cuda_graph and state.input_ids.is_cuda) or state.graph_failed:
            return self._forward_step(base, state, cache_kw)
        if state.graph is None:
            return self._capture(base, state, cache_kw)
        state.graph.replay()
        return state.logits

    def _capture(self, base, state: _DecodeState, cache_kw: str) -> torch.Tensor:
        """Run this step eagerly on a side stream (warm-up), then capture the next one
        (capturing records the kernels without running them, so the cache is untouched)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            logits = self._forward_step(base, state, cache_kw)  # this token's real step
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                state.logits = self._forward_step(base, state, cache_kw)
        except Exception as err:  # noqa: BLE001 - any capture failure falls back to eager steps
            logger.warning("CUDA graph capture of the decode step failed (%s); decoding eagerly", err)
            state.graph_failed = True
            torch.cuda.synchronize()
            return logits
        state.graph = graph
        return logits
