"""One contract for the three samplers, and the one place that chooses among them.

A sampler draws ``k`` answers per prompt from the current model, without gradient:

- :class:`~trl_ground.sampling.generation.GenerateSampler`: ``model.generate``; works everywhere;
- :class:`~trl_ground.sampling.static.StaticSampler`: a static KV cache and a decode step
  replayed from a CUDA graph (the default; optionally merged LoRA weights);
- :class:`~trl_ground.sampling.speculative.SpeculativeSampler`: drafts taken from each prompt's target
  answer, verified in blocks; exact samples in fewer decode steps (its verify step compiled
  and graph-captured like the static sampler's).

All three share their arithmetic and their front door (:mod:`trl_ground.sampling.decoding`:
:class:`~trl_ground.sampling.decoding.TokenRule`, :class:`~trl_ground.sampling.decoding.SamplerBase`): with the
same settings, greedy answers are the same tokens. Mixed precision is the caller's
(:func:`trl_ground.sampling.decoding.sampling_autocast` around the call): a sampler computes in the
autocast dtype it finds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from . import SAMPLER_NAMES
from .batches import PromptBatch, Samples
from .generation import GenerateSampler
from .speculative import SpeculativeSampler
from .static import StaticSampler

__all__ = ["SAMPLER_NAMES", "Sampler", "make_sampler"]

logger = logging.getLogger(__name__)


@runtime_checkable
class Sampler(Protocol):
    """Samples answers for a :class:`~trl_ground.sampling.batches.PromptBatch`.

    Attributes:
        uses_targets: whether :meth:`sample` reads ``targets`` (only then do callers extract them).
    """

    uses_targets: bool

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
        """``k`` answers per prompt (KV cache, no gradient, the model in eval mode meanwhile).

        Args:
            model: the model (PEFT-wrapped or not), unwrapped from DDP / FSDP / DeepSpeed.
            prompts: ``B`` left-padded prompts with their images.
            tokenizer: the processor's tokenizer (end, image and pad token ids).
            k: answers per prompt; the ``R = B * k`` rows come prompt by prompt
                (``[p0, p0, p1, p1]`` for k = 2).
            temperature: sampling temperature (unused when greedy).
            max_new_tokens: token limit of an answer.
            do_sample: False: greedy (``argmax``) answers.
            min_new_tokens: no end token before this many tokens (benchmarks pin lengths so).
            targets: ``B`` lists of token ids, each prompt's target answer: the speculative
                sampler drafts from them (and needs them); the others ignore them.

        Returns:
            :class:`~trl_ground.sampling.batches.Samples` of the ``R`` rows: ``completion_ids (R, T)``
            padded after each row's end token, ``completion_mask (R, T)``, ``truncated (R,)``,
            the decoded texts.
        """
        ...


def make_sampler(name: str, *, parameters_move: bool = False, merged_weights: bool = False, compile: bool = False,
                 speculative_block: int = 4) -> Sampler:
    """The sampler called ``name`` (one of :data:`SAMPLER_NAMES`), made once per run.

    Args:
        name: ``"static"``, ``"generate"`` or ``"speculative"``.
        parameters_move: the weights are gathered per call (FSDP, ZeRO-3). A CUDA graph keeps
            the addresses of the weights, and the speculative sampler has not been run sharded:
            both give way to the generate sampler, said in one log line.
        merged_weights: the static or speculative sampler samples with merged LoRA weights
            (:mod:`trl_ground.sampling.merged_weights`).
        compile: their decode step goes through ``torch.compile`` before its CUDA-graph
            capture (:class:`trl_ground.sampling.static.DecodeGraphs`).
        speculative_block: draft tokens per verify step of the speculative sampler.

    Raises:
        ValueError: an unknown ``name``.
    """
    if name not in SAMPLER_NAMES:
        raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {name!r}")
    if parameters_move and name != "generate":
        unused = [what for what, on in (("merged weights", merged_weights), ("compile", compile)) if on]
        merged = f" ({' and '.join(unused)} unused)" if unused else ""
        logger.warning("sampler %r%s: parameters are gathered per call under FSDP / ZeRO-3, sampling with generate", name, merged)
        name = "generate"
    if name == "static":
        return StaticSampler(merged_weights=merged_weights, compile=compile)
    if name == "speculative":
        return SpeculativeSampler(block=speculative_block, merged_weights=merged_weights, compile=compile)
    return GenerateSampler()
