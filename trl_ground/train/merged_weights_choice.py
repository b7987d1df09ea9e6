"""Whether a run samples with merged LoRA weights: ``performance.sampler_merged_weights``
resolved once, when the trainer is built.

``true`` and ``false`` are taken as given (``true`` refuses, there and then, a model without
LoRA linears to merge). ``"auto"`` is on only for a LoRA model on one CUDA GPU, with the static or
speculative sampler, without FSDP / ZeRO-3 (whose parameters move: a CUDA graph keeps addresses), on a run
that samples, and when the memory rule of :mod:`trl_ground.config.performance` holds: the
memory allocated now + the merged copies + the step's reserve <= the budget. On a CPU it is
off: there is no CUDA graph, and merging gives nothing measurable there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config.performance import AUTO, GB, PerformanceSettings, memory_budget_bytes, merged_weights_fit, sampling_reserve_bytes
from ..sampling.merged_weights import mergeable_lora_linears, merged_nbytes

__all__ = ["MergedWeightsChoice", "choose_merged_weights"]


@dataclass(frozen=True)
class MergedWeightsChoice:
    """The decision and its reason, as the trainer logs it (``str()``)."""

    on: bool
    reason: str

    def __str__(self) -> str:
        return f"merged sampling weights: {'on' if self.on else 'off'} ({self.reason})"


def choose_merged_weights(
    model, performance: PerformanceSettings, *, dtype: torch.dtype, rows: int, parameters_move: bool, samples: bool = True
) -> MergedWeightsChoice:
    """Resolve ``performance.sampler_merged_weights`` for ``model`` where it is now.

    Args:
        model: the trainer's model (PEFT-wrapped or not), on its device.
        performance: the run's :class:`~trl_ground.config.PerformanceSettings`.
        dtype: the sampling dtype (the merged matrices' dtype).
        rows: rows of the step's largest forward pass (the reserve is counted per row).
        parameters_move: the weights are gathered per call (FSDP, ZeRO-3).
        samples: whether the run samples answers at all (the grounding loss is on).

    Raises:
        ValueError: ``sampler_merged_weights`` is true and the model has no LoRA linears to merge.
    """
    setting = performance.sampler_merged_weights
    if setting != AUTO:
        if setting:
            mergeable_lora_linears(model)  # refuses a model without LoRA linears now, not at the first sampling step
        return MergedWeightsChoice(bool(setting), f"sampler_merged_weights: {'true' if setting else 'false'}")
    off = _why_not(model, performance, parameters_move, samples)
    if off:
        return MergedWeightsChoice(False, f"auto: {off}")
    try:
        layers = mergeable_lora_linears(model)
    except ValueError:
        return MergedWeightsChoice(False, "auto: no LoRA linears that merge into one matrix (full fine-tuning, DoRA or LoRA bias)")
    device = next(model.parameters()).device
    resident = torch.cuda.memory_allocated(device)
    merged = merged_nbytes(layers, dtype)
    reserve = sampling_reserve_bytes(rows)
    base_in_4bit = any(type(p).__name__ == "Params4bit" for p in model.parameters())
    budget = memory_budget_bytes(
        performance.sampler_memory_budget_gb, base_in_4bit=base_in_4bit,
        device_total_bytes=torch.cuda.get_device_properties(device).total_memory,
    )
    fits = merged_weights_fit(resident, merged, reserve, budget)
    source = ("sampler_memory_budget_gb" if performance.sampler_memory_budget_gb is not None
              else "a 4-bit base's default" if base_in_4bit else "the GPU's memory")
    return MergedWeightsChoice(fits, (
        f"auto: {resident / GB:.1f} GB resident + {merged / GB:.1f} GB merged + {reserve / GB:.1f} GB reserve for {rows} rows "
        f"{'<=' if fits else '>'} {budget / GB:.1f} GB budget ({source})"
    ))


def _why_not(model, performance: PerformanceSettings, parameters_move: bool, samples: bool) -> str | None:
    """Why auto is off before any memory is counted, or None."""
    if not samples:
        return "no answers are sampled (grounding_loss is off)"
    if performance.sampler == "generate":
        return "the 'generate' sampler samples from the model as it is"
    if parameters_move:
        return "parameters are gathered per call under FSDP / ZeRO-3"
    devices = {p.device for p in model.parameters()}
    if len(devices) != 1 or next(iter(devices)).type != "cuda":
        return "not on one CUDA GPU" if len(devices) > 1 else f"on {next(iter(devices)).type}, no CUDA graph to speed up"
    return None
