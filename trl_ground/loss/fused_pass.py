"""Log-probabilities of sampled answers, and the fused forward pass that computes them in
the same pass as the SFT loss.

:func:`fused_sft_and_answers` runs one forward pass over ``B`` SFT rows followed by ``R``
``[prompt][answer]`` rows (instead of one pass each). Its LM loss mirrors the default branch
of ``trl.SFTTrainer.compute_loss`` in **TRL 1.16.0** (``loss_type="nll"``, no label smoothing,
no ``compute_loss_func``, no MoE aux loss): the per-token log-probabilities of TRL's fused LM
head, summed over the SFT rows' label tokens, divided by ``num_items_in_batch`` (or the number
of label tokens), times the number of processes when ``average_tokens_across_devices`` is set.
``tests/trl_ground/loss/test_fused_pass.py`` fails when TRL's loss and this one disagree; the
trainer refuses any other loss setting when the grounding loss is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sampling.batches import Samples, answer_inputs, concat_sft_and_samples
from .packing import pack_sft_and_samples
from .policy_gradient import answer_token_logprobs

__all__ = ["FusedPass", "answer_logprobs", "fused_sft_and_answers", "spatial_merge_size_of"]


def spatial_merge_size_of(model) -> int | None:
    """Qwen3-VL's patches merged per side (2), from the config of a model or a PEFT wrapper
    (None for a model without a vision tower: positions are then left to the model)."""
    return getattr(getattr(getattr(model, "config", None), "vision_config", None), "spatial_merge_size", None)


def answer_logprobs(model, samples: Samples, spatial_merge_size: int | None = None) -> torch.Tensor:
    """The tests' oracle of the fused pass (the trainer never calls it): per-token
    log-probabilities ``(R, T)`` of the sampled answers under ``model``, with gradient, from one forward pass over ``[prompt][answer]`` through the fused LM head that
    TRL's trainers install (``fused_lm_head=True``: no ``(R, T, vocab)`` logits). 0 after an
    answer's end. ``spatial_merge_size`` (see :func:`spatial_merge_size_of`) lets the M-RoPE
    positions be computed in one go."""
    out = model(**answer_inputs(samples, spatial_merge_size), fused_lm_head=True, use_cache=False)
    return answer_token_logprobs(out.log_probs, samples.prompts.input_ids.shape[1], samples.completion_ids.shape[1])


@dataclass
class FusedPass:
    """What :func:`fused_sft_and_answers` returns.

    Attributes:
        lm_loss: scalar, TRL's SFT loss of the SFT rows (scaled as TRL scales it).
        answer_logp: ``(R, T)`` per-token log-probabilities of the answers, with gradient.
        sft_label_mask, sft_entropy, sft_is_top1: ``(B, W - 1)`` per-position outputs of the
            SFT rows (for TRL's ``entropy`` / ``mean_token_accuracy`` metrics; the last two may be None).
    """

    lm_loss: torch.Tensor
    answer_logp: torch.Tensor
    sft_label_mask: torch.Tensor
    sft_entropy: torch.Tensor | None
    sft_is_top1: torch.Tensor | None


def fused_sft_and_answers(
    model,
    sft_inputs: dict,
    samples: Samples,
    pad_token_id: int,
    num_items_in_batch=None,
    process_factor: int = 1,
    spatial_merge_size: int | None = None,
    pack: bool = False,
    k: int = 1,
    prompt_lengths: torch.Tensor | None = None,
) -> FusedPass:
    """One forward pass for the SFT rows of ``sft_inputs`` and the answers of ``samples``.

    Args:
        model: the model with TRL's fused LM head (``fused_lm_head=True``).
        sft_inputs: TRL's SFT batch (``input_ids``, ``labels``, images, ...), ``B`` rows.
        samples: ``R`` sampled answers with their prompts.
        pad_token_id: padding id for the common width.
        num_items_in_batch: label tokens of the whole accumulated batch (TRL's normalizer), or None.
        process_factor: what TRL multiplies the loss by under ``average_tokens_across_devices``
            (processes / tensor-parallel size), 1 otherwise.
        spatial_merge_size: Qwen3-VL's merge size, to compute the M-RoPE positions in one go.
        pack: shared-prefix packing (:mod:`trl_ground.loss.packing`): each prompt once, followed by
            its target and its ``k`` answers (same loss and gradients, fewer tokens).
        k: answers per prompt in ``samples`` (with ``pack``).
        prompt_lengths: with ``pack``, ``(B,)`` the SFT rows' prompt lengths
            (:func:`~trl_ground.sampling.batches.sft_prompt_lengths`) where the caller has them
            (the trainer, which cut the prompts out with them); computed when None.
    """
    if pack:
        packed = pack_sft_and_samples(sft_inputs, samples, k, pad_token_id, spatial_merge_size, prompt_lengths)
        outputs = model(**packed.inputs, use_cache=False, fused_lm_head=True)
        sft_mask = packed.sft_columns
        sft_part = lambda t: None if t is None else t * sft_mask  # noqa: E731 - the answer columns are not SFT's
        sft_log_probs = sft_part(outputs.log_probs)
        answer_logp = packed.answer_logprobs(outputs.log_probs)
        entropy, is_top1 = sft_part(outputs.entropy), sft_part(outputs.is_top1)
    else:
        combined, n_sft = concat_sft_and_samples(sft_inputs, samples, pad_token_id, spatial_merge_size)
        outputs = model(**combined, use_cache=False, fused_lm_head=True)
        sft_mask = outputs.label_mask[:n_sft]
        sft_log_probs = outputs.log_probs[:n_sft]
        answer_logp = answer_token_logprobs(
            outputs.log_probs[n_sft:], samples.prompts.input_ids.shape[1], samples.completion_ids.shape[1]
        )
        entropy = None if outputs.entropy is None else outputs.entropy[:n_sft]
        is_top1 = None if outputs.is_top1 is None else outputs.is_top1[:n_sft]
    denom = sft_mask.sum() if num_items_in_batch is None else num_items_in_batch
    lm_loss = -sft_log_probs.sum() / torch.as_tensor(denom).clamp(min=1)
    if num_items_in_batch is not None:
        lm_loss = lm_loss * process_factor
    return FusedPass(lm_loss=lm_loss, answer_logp=answer_logp, sft_label_mask=sft_mask, sft_entropy=entropy, sft_is_top1=is_top1)
