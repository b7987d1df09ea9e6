"""What every sampler shares: the token ids an answer ends on or must not contain, how the
next token is chosen from the logits, the prefill, eval mode and the mixed precision of
sampling, and the front door of a sampler (:class:`SamplerBase`: prompts repeated, decoding
without gradient in eval mode, tokens turned into :class:`~trl_ground.sampling.batches.Samples`).

The samplers (:mod:`trl_ground.sampling.samplers`) differ only in how they run the decode steps
(``model.generate``, a static cache replayed from a CUDA graph, drafts verified in blocks);
the arithmetic of a step is :class:`TokenRule`'s, so that greedy answers agree token for
token and sampled ones follow one distribution.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..model.qwen3vl import mrope_position_ids
from .batches import PromptBatch, Samples

__all__ = [
    "VISION_TOKENS",
    "SamplerBase",
    "TokenRule",
    "base_model",
    "cache_kwarg",
    "completion_mask_until_eos",
    "eos_ids_of",
    "eval_mode",
    "prefill",
    "samples_from_tokens",
    "sampling_autocast",
    "sampling_dtype",
    "vision_token_ids",
    "weights_dtype",
]

logger = logging.getLogger(__name__)

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


# ---- token ids -------------------------------------------------------------------------
def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the image placeholder tokens. An answer must never contain them (the model
    would look for image features that are not there), so sampling suppresses them; a
    trained model never emits them, an untrained one can."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
    return [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]


def eos_ids_of(model, tokenizer) -> list[int]:
    """End-of-answer tokens: the generation config's, plus the tokenizer's ``<|im_end|>`` and eos."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end not in ids and im_end != tokenizer.unk_token_id:
        ids.append(im_end)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def completion_mask_until_eos(ids: torch.Tensor, eos_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask (R, T) long, truncated (R,) bool)``: 1 up to and including the first end token
    of each row of ``ids (R, T)``; truncated rows have none."""
    is_eos = torch.isin(ids, torch.as_tensor(list(eos_ids), device=ids.device))
    seen_before = (is_eos.cumsum(dim=1) - is_eos.int()) > 0
    return (~seen_before).long(), ~is_eos.any(dim=1)


def samples_from_tokens(rows: PromptBatch, tokens: torch.Tensor, eos_ids: Sequence[int], tokenizer, sampler_logprobs=None) -> Samples:
    """The :class:`~trl_ground.sampling.batches.Samples` of ``tokens (R, T)`` sampled after ``rows``:
    each row cut after its first end token (the rest set to the pad token) and decoded."""
    mask, truncated = completion_mask_until_eos(tokens, eos_ids)
    tokens = tokens.masked_fill(mask == 0, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
    return Samples(rows, tokens, mask, truncated, texts, sampler_logprobs=sampler_logprobs)


# ---- choosing the next token -----------------------------------------------------------
@dataclass
class TokenRule:
    """How a sampler picks the next token: ``model.generate``'s arithmetic, written once.

    The processing, on a float32 copy of the logits: the image tokens at -inf, the end
    tokens at -inf before ``min_new_tokens``; then, sampling, ``softmax(scores /
    temperature)`` and ``multinomial``; greedy, ``argmax`` (no top-k / top-p).

    Attributes:
        end: ``(E,)`` end-of-answer token ids (:func:`eos_ids_of`).
        suppress: ``(S,)`` image placeholder ids (:func:`vision_token_ids`).
        pad_token_id: written after a row's end.
        temperature, do_sample, min_new_tokens: the sampling settings of the call.
    """

    end: torch.Tensor
    suppress: torch.Tensor
    pad_token_id: int
    temperature: float = 1.0
    do_sample: bool = True
    min_new_tokens: int = 0

    @classmethod
    def of(cls, model, tokenizer, device=None, *, temperature: float = 1.0, do_sample: bool = True, min_new_tokens: int = 0) -> TokenRule:
        """The rule for ``model`` (its generation config's end tokens) and ``tokenizer``,
        its id tensors on ``device``."""
        as_ids = lambda ids: torch.tensor(ids, dtype=torch.long, device=device)  # noqa: E731
        return cls(as_ids(eos_ids_of(model, tokenizer)), as_ids(vision_token_ids(tokenizer)), tokenizer.pad_token_id,
                   temperature, do_sample, min_new_tokens)

    @property
    def end_ids(self) -> list[int]:
        return self.end.tolist()

    def generate_kwargs(self) -> dict:
        """The same rule as keyword arguments of ``model.generate`` (its logits processors)."""
        kwargs = dict(do_sample=self.do_sample, eos_token_id=self.end_ids, pad_token_id=self.pad_token_id,
                      suppress_tokens=self.suppress.tolist(), use_cache=True)
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=0, top_p=1.0)
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        return kwargs

    def scores(self, logits: torch.Tensor, ban_end: bool | torch.Tensor = False) -> torch.Tensor:
        """A float32 copy of ``logits (..., V)`` with the suppressed tokens at -inf, and the end
        tokens too where ``ban_end``: everywhere (True) or where the bool tensor ``(...)`` is."""
        scores = logits.to(torch.float32, copy=True)
        scores[..., self.suppress] = -math.inf
        if isinstance(ban_end, torch.Tensor):
            scores[..., self.end] = scores[..., self.end].masked_fill(ban_end.unsqueeze(-1), -math.inf)
        elif ban_end:
            scores[..., self.end] = -math.inf
        return scores

    def probs(self, logits: torch.Tensor, ban_end: bool | torch.Tensor = False) -> torch.Tensor:
        """``(..., V)`` the distribution the next token is drawn from (greedy: at temperature 1,
        its argmax is the greedy token)."""
        return torch.softmax(self.scores(logits, ban_end) / (self.temperature if self.do_sample else 1.0), dim=-1)

    def pick(self, logits: torch.Tensor, ban_end: bool | torch.Tensor = False) -> torch.Tensor:
        """``(R,)`` the next token of each row of ``logits (R, V)``."""
        scores = self.scores(logits, ban_end)
        if not self.do_sample:
            return scores.argmax(dim=-1)
        return torch.multinomial(torch.softmax(scores / self.temperature, dim=-1), num_samples=1).squeeze(1)


# ---- the model while sampling ----------------------------------------------------------
def base_model(model):
    """The transformers model under PEFT/accelerate wrappers (LoRA layers are inside it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def cache_kwarg(model) -> str:
    """The forward's name for the KV cache: ``past_key_values`` (transformers <= 5.2x) or ``cache``."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@contextlib.contextmanager
def eval_mode(model):
    """Eval mode for sampling (dropout off; the KV cache stays on even with gradient
    checkpointing, which disables it only in train mode); restores the mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def prefill(base, rows: PromptBatch, cache, cache_kw: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the prompts (images included) into ``cache`` of the transformers model ``base``,
    the 3D positions of the image tokens computed in one go.

    Returns:
        ``(logits of the next token (R, V), rope deltas (R, 1))``: a text token's position
        is its text index plus the delta.
    """
    inputs = rows.model_inputs()
    rope_deltas = None
    if rows.mm_token_type_ids is not None:
        merge = base.config.vision_config.spatial_merge_size
        inputs["position_ids"], rope_deltas = mrope_position_ids(rows.mm_token_type_ids, rows.image_grid_thw, rows.attention_mask, merge)
    out = base(**inputs, **{cache_kw: cache}, use_cache=True, logits_to_keep=1)
    if rope_deltas is None:
        rope_deltas = base.model.rope_deltas.to(rows.input_ids.device)
    return out.logits[:, -1], rope_deltas


# ---- precision -------------------------------------------------------------------------
def weights_dtype(model) -> torch.dtype:
    """The dtype of the model's input embedding: fp32 for full fine-tuning, the base's
    (bf16) with LoRA, whatever dtype the adapters have."""
    return base_model(model).get_input_embeddings().weight.dtype


def sampling_dtype(model, device) -> torch.dtype:
    """The dtype the model computes in while sampling: the autocast dtype when autocast is on
    (an fp32 model trained in mixed precision), else the model's own."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return base_model(model).dtype


def sampling_autocast(args, device, model=None):
    """Mixed precision for sampling, from the training config ``args`` (its ``bf16`` /
    ``fp16``). The unwrapped model has no autocast wrapper, and without one a QLoRA model
    (whose norms k-bit preparation keeps in fp32) would decode in fp32. The autocast cache is
    off: casts made under ``no_grad`` (and inside a CUDA graph) must never be reused by the
    training forward.

    A model whose weights are fp32 (full fine-tuning's master weights, ``model`` given)
    samples in fp32: under bf16 autocast, sampling the learning benchmark's trained fp32
    model inside ``Trainer.train()`` gave NaN logits at the first sampling step on an H200,
    while the same sampler and model under the same autocast outside the training step did
    not (cause not established; ``benchmarks/device/diagnose_autocast_nan.py`` reproduces
    it). The fp32 path is the one tested against ``generate``."""
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    if dtype is None or device.type != "cuda" or (model is not None and weights_dtype(model) == torch.float32):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


# ---- the samplers' common front door -------------------------------------------------
class SamplerBase:
    """What every :class:`~trl_ground.sampling.samplers.Sampler` does around its decoding: repeat the
    prompts ``k`` times, build the :class:`TokenRule` of the call, decode without gradient in
    eval mode, and turn the tokens into :class:`~trl_ground.sampling.batches.Samples`. A subclass
    implements :meth:`_decode`.

    Attributes:
        uses_targets: whether :meth:`_decode` reads the prompts' target answers (callers skip
            extracting them otherwise: it costs a device-to-host copy of the labels).
        merged_weights: decode with the LoRA linears merged into dense matrices
            (:class:`~trl_ground.sampling.merged_weights.MergedSamplingWeights`, made on first
            use and refreshed from the adapters on every call); :meth:`_decode` then returns
            its tokens' log-probabilities under that sampling model.
    """

    uses_targets = False
    merged_weights = False
    _merged = None

    def sample(
        self,
        model,
        prompts: PromptBatch,
        tokenizer,
        *,
        k: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 256,
        do_sample: bool = True,
        min_new_tokens: int = 0,
        targets: Sequence[Sequence[int]] | None = None,
    ) -> Samples:
        """:meth:`trl_ground.sampling.samplers.Sampler.sample`."""
        rows = prompts.repeat(k)
        rule = TokenRule.of(base_model(model), tokenizer, rows.input_ids.device, temperature=temperature, do_sample=do_sample,
                            min_new_tokens=min_new_tokens)
        row_targets = None if targets is None else [list(t) for t in targets for _ in range(k)]
        with torch.no_grad(), eval_mode(model), self._sampling_weights(model, rows.input_ids.device):
            tokens, logprobs = self._decode(model, rows, rule, max_new_tokens, row_targets)
        return samples_from_tokens(rows, tokens, rule.end_ids, tokenizer, sampler_logprobs=logprobs)

    def _sampling_weights(self, model, device):
        """The weights :meth:`_decode` runs with: the model's own, or (``merged_weights``) its
        merged matrices, made on first use and refreshed from the current adapters, in the
        autocast dtype when sampling runs under autocast."""
        if not self.merged_weights:
            return contextlib.nullcontext()
        from .merged_weights import MergedSamplingWeights

        if self._merged is None:
            self._merged = MergedSamplingWeights(model, sampling_dtype(model, device))
            logger.info("merged sampling weights: %.2f GB", self._merged.nbytes / 1e9)
        self._merged.refresh()
        return self._merged.active()

    def _decode(self, model, rows: PromptBatch, rule: TokenRule, max_new_tokens: int, row_targets: list[list[int]] | None):
        """The answers of ``rows`` (``R`` prompts, already repeated), their target answers
        ``row_targets`` (``R`` lists, or None).

        Returns:
            ``(tokens (R, T), log-probabilities (R, T) of those tokens under the sampling model
            at temperature 1, or None)``: the log-probabilities are needed (and only given)
            with ``merged_weights``; a row's tokens after its end token are ignored.
        """
        raise NotImplementedError
