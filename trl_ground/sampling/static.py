"""The in-loop sampler: a static KV cache and a decode step replayed from a CUDA graph; and
the decode steps of fixed shapes it shares with the speculative sampler (:class:`DecodeGraphs`).

``model.generate`` spends most of a decode step in Python and kernel launches at training
batch sizes (about 90-140 ms per token for the 8B model on an H200, BENCHMARKS.md, against a
memory floor of a few ms), and transformers does not compile the decode step of a
bitsandbytes model. This sampler:

1. prefills the prompts (eagerly; images included; :func:`trl_ground.sampling.decoding.prefill`)
   into a static cache (:class:`DecodeGraphs`: its length
   rounded up to a bucket, so that steps with other prompt lengths reuse it);
2. runs one decode step per token (``[R, 1]`` tokens, 3D M-RoPE positions, a ``[R, 1, 1, L]``
   attention mask, all in fixed buffers), compiled with ``torch.compile`` when asked and
   captured in a CUDA graph once per ``(rows, bucket)`` on CUDA, then replayed; on a CPU, or
   if capture fails, the same step runs eagerly;
3. picks each token outside the graph with :class:`trl_ground.sampling.decoding.TokenRule`, the exact
   arithmetic of ``generate`` (image tokens and, before ``min_new_tokens``, end tokens
   suppressed; temperature, then ``softmax`` + ``multinomial``; ``argmax`` when greedy);
4. stops as soon as every row has ended (checked every few tokens, to avoid a sync per step).

With ``merged_weights`` the LoRA linears run as single dense matrices while sampling
(:mod:`trl_ground.sampling.merged_weights`, refreshed before each call, their buffers also captured
once) and the samples carry their tokens' log-probabilities under that sampling model.
"""

from __future__ import annotations

import logging
import math

import torch
from transformers import StaticCache

from .batches import PromptBatch
from .decoding import SamplerBase, TokenRule, base_model, cache_kwarg, prefill, sampling_dtype

__all__ = ["DecodeGraphs", "DecodeState", "StaticSampler", "UniformDtypeStaticCache"]

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


class DecodeState:
    """Buffers, static cache and (once captured) the CUDA graph of one
    ``(rows, width, cache length, device, dtype)`` shape.

    Attributes:
        input_ids: ``(R, width)`` the tokens of the next step.
        position_ids: ``(3, R, width)`` their M-RoPE positions (text tokens: three equal rows).
        mask: ``(R, 1, width, L)`` bool, the cache slots each fed token attends to.
        cache: the static KV cache of length ``L``; each step appends ``width`` slots per row.
        logits: ``(R, width, V)`` the captured step's output buffer (None before capture).
    """

    def __init__(self, config, rows: int, width: int, length: int, device, dtype):
        self.rows, self.width, self.length = rows, width, length
        self.cache = UniformDtypeStaticCache(config, length, dtype)
        self.input_ids = torch.zeros((rows, width), dtype=torch.long, device=device)
        self.position_ids = torch.zeros((3, rows, width), dtype=torch.long, device=device)
        self.mask = torch.zeros((rows, 1, width, length), dtype=torch.bool, device=device)
        self.logits: torch.Tensor | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_failed = False
        self.compiled = False  # its step has run compiled (the compilation is behind it)

    def reset(self) -> None:
        """An empty cache and mask, for a new call (the buffers keep their addresses)."""
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", False):
                layer.cumulative_length.zero_()
                layer.keys.zero_()
                layer.values.zero_()
        self.mask.zero_()


# Compiled decode steps share dynamo's cache (one entry per shape, merged or not, process-wide):
# room for the shapes a run meets (train and eval rows, prompt buckets, verify widths), and an
# error rather than a silent eager step once it is full.
_RECOMPILE_LIMIT = 32


def _compile_limits() -> dict:
    wanted = {"recompile_limit": _RECOMPILE_LIMIT, "fail_on_recompile_limit_hit": True}
    return {key: value for key, value in wanted.items() if hasattr(torch._dynamo.config, key)}


def _forward(base, input_ids, position_ids, mask, cache, cache_kw: str) -> torch.Tensor:
    """One decode step of the transformers model ``base``: ``(R, width, V)`` logits."""
    out = base(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=True,
               logits_to_keep=input_ids.shape[1], **{cache_kw: cache})
    return out.logits


class DecodeGraphs:
    """Runs decode steps of fixed shapes, compiled and graph-captured where it can; the static
    and the speculative samplers decode through one.

    A decode step feeds ``width`` tokens per row (1 for plain decoding, ``block + 1`` for a
    speculative verify step) into a static cache whose length is rounded up to a bucket, its
    inputs in fixed buffers (:class:`DecodeState`) that the caller fills before each step; it
    returns the logits of the ``width`` positions, ``(R, width, V)``. The step runs:

    1. through ``torch.compile`` when asked (one compiled function, one graph per shape; on the
       devices in ``compile_devices``, CUDA by default): Inductor fuses the ~50 small kernels
       of a decoder layer besides its linears (RMSNorms, rotary embedding, residual adds,
       casts) that held the merged decode step at ~5x its memory floor;
    2. captured once per shape in a CUDA graph and replayed (on CUDA); the first step of a
       shape runs eagerly on a side stream (warm-up, and the compilation), the next is captured.

    If compilation or capture fails, one warning says so and the step runs without it; so does
    a shape past dynamo's recompile limit (the compiled step's cache is one per process, shared
    by every instance: :data:`_RECOMPILE_LIMIT` shapes). Graphs
    hold pointers to the weights: weights updated in place by the optimizer stay valid, so a
    graph is captured once per shape and reused for the whole run.

    Args:
        use_cuda_graph: capture each shape's step in a CUDA graph when its buffers are on CUDA.
        compile: run the step through ``torch.compile`` on the devices in ``compile_devices``.
        compile_devices: device types to compile on (default CUDA only: on a CPU the compiled
            step gains little and its compilation costs seconds per shape).
        bucket: cache lengths are rounded up to a multiple of this.
        max_states: caches (and graphs) kept for this many shapes, the least recently used
            dropped first.
    """

    def __init__(self, use_cuda_graph: bool = True, compile: bool = False, compile_devices: tuple[str, ...] = ("cuda",),
                 bucket: int = 128, max_states: int = 4):
        self.use_cuda_graph = use_cuda_graph
        self.compile = compile
        self.compile_devices = tuple(compile_devices)
        self.bucket = bucket
        self.max_states = max_states
        self.states: dict[tuple, DecodeState] = {}
        self._compiled = None
        self.compile_failed = False

    def state(self, base, rows: int, width: int, min_length: int, device, dtype) -> DecodeState:
        """The reset :class:`DecodeState` of this shape (made on first use), its cache at least
        ``min_length`` long (rounded up to the bucket)."""
        length = int(math.ceil(min_length / self.bucket) * self.bucket)
        key = (rows, width, length, str(device), dtype)
        if key not in self.states:
            if len(self.states) >= self.max_states:  # bound the memory held by caches of old shapes
                self.states.pop(next(iter(self.states)))
            self.states[key] = DecodeState(base.config, rows, width, length, device, dtype)
        state = self.states.pop(key)
        self.states[key] = state  # most recently used last
        state.reset()
        return state

    def step(self, base, state: DecodeState, cache_kw: str) -> torch.Tensor:
        """Run one step from ``state``'s buffers: ``(R, width, V)`` logits (after capture, the
        graph's output buffer, overwritten by the next step)."""
        if not (self.use_cuda_graph and state.input_ids.is_cuda) or state.graph_failed:
            return self._run(base, state, cache_kw)
        if state.graph is None:
            return self._capture(base, state, cache_kw)
        state.graph.replay()
        return state.logits

    # ---- internals -------------------------------------------------------------------
    def _uses_compile(self, device: torch.device) -> bool:
        return self.compile and not self.compile_failed and device.type in self.compile_devices

    def _run(self, base, state: DecodeState, cache_kw: str) -> torch.Tensor:
        args = (base, state.input_ids, state.position_ids, state.mask, state.cache, cache_kw)
        if not self._uses_compile(state.input_ids.device):
            return _forward(*args)
        if self._compiled is None:
            self._compiled = torch.compile(_forward, dynamic=False)
        # every layer's cache length before this step, to undo a failed call's writes (a step
        # being captured writes nothing, and a copy there would be replayed with every step)
        capturing = state.input_ids.is_cuda and torch.cuda.is_current_stream_capturing()
        layers = [] if capturing else [layer for layer in state.cache.layers if getattr(layer, "is_initialized", False)]
        length = layers[0].cumulative_length.clone() if layers else None
        try:  # a new shape compiles; past the recompile limit this raises instead of running uncompiled
            with torch._dynamo.config.patch(**_compile_limits()):
                logits = self._compiled(*args)
        except Exception as err:  # noqa: BLE001 - a step that cannot be compiled still runs
            logger.warning("torch.compile of the decode step failed (%s); decoding without it", err)
            self.compile_failed = True
            for layer in layers:
                layer.cumulative_length.copy_(length)
            return _forward(*args)
        state.compiled = True
        return logits

    def _capture(self, base, state: DecodeState, cache_kw: str) -> torch.Tensor:
        """Run this step eagerly on a side stream (warm-up and compilation), then capture the
        next one (capturing records the kernels without running them: the cache is untouched)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            logits = self._run(base, state, cache_kw)  # this step's real run
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                state.logits = self._run(base, state, cache_kw)
        except Exception as err:  # noqa: BLE001 - any capture failure falls back to steps without a graph
            logger.warning("CUDA graph capture of the decode step failed (%s); decoding without a graph", err)
            state.graph_failed = True
            torch.cuda.synchronize()
            return logits
        state.graph = graph
        return logits


class StaticSampler(SamplerBase):
    """Samples answers for :class:`~trl_ground.sampling.batches.PromptBatch` es, reusing its caches
    and graphs across calls. One instance per model (the trainer keeps one).

    Args:
        use_cuda_graph: capture the decode step when the model is on CUDA.
        bucket: cache lengths are rounded up to a multiple of this.
        max_states: caches (and graphs) kept for this many shapes (rows, cache length, device, dtype), the
            least recently used dropped first.
        merged_weights: sample with the LoRA linears merged into dense matrices
            (:class:`~trl_ground.sampling.merged_weights.MergedSamplingWeights`); the samples then
            hold ``sampler_logprobs``.
        compile: run the decode step through ``torch.compile`` before capturing it (on CUDA;
            :class:`~trl_ground.sampling.static.DecodeGraphs`).
        compile_devices: the device types ``compile`` applies to.
    """

    def __init__(self, use_cuda_graph: bool = True, bucket: int = 128, max_states: int = 4, merged_weights: bool = False,
                 compile: bool = False, compile_devices: tuple[str, ...] = ("cuda",)):
        self.graphs = DecodeGraphs(use_cuda_graph, compile, compile_devices, bucket, max_states)
        self.merged_weights = merged_weights

    @property
    def _states(self):
        """The decode states kept, least recently used first (``(rows, width, length, device, dtype)`` keys)."""
        return self.graphs.states

    def _decode(self, model, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, row_targets=None):
        """:meth:`~trl_ground.sampling.decoding.SamplerBase._decode`: log-probabilities with merged weights only."""
        return self._decode_steps(base_model(model), rows, rule, max_new_tokens, with_logprobs=self.merged_weights)

    def _decode_steps(self, base, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, with_logprobs: bool = False):
        """``(tokens (R, T), their log-probabilities (R, T) at temperature 1 or None)``."""
        device = rows.input_ids.device
        n_rows, prompt_len = rows.input_ids.shape
        state = self.graphs.state(base, n_rows, 1, prompt_len + max_new_tokens, device, sampling_dtype(base, device))
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
            logits = self.graphs.step(base, state, cache_kw)[:, -1]
        return out_tokens[:, :produced], (out_logprobs[:, :produced] if with_logprobs else None)
