"""Merged sampling weights: each LoRA linear as one dense matrix while sampling.

A decode step of a LoRA model runs, per adapted linear, the base matmul (for a 4-bit base:
two dequantization kernels, a bf16 copy of the weight written and re-read, then the matmul)
and the adapter (casts of the fp32 LoRA weights under autocast, two skinny matmuls, a scale
and an add): about seven kernels where one would do, and a 4-bit base moves ~31 GB per
token (codes read, bf16 weights written and re-read) instead of ~14 GB.

:class:`MergedSamplingWeights` keeps, for every LoRA linear, a dense matrix
``W = base + sum over active adapters of scaling * B @ A`` (base dequantized when 4-bit) in
the compute dtype, refreshed before each sampling call (the adapters change every optimizer
step; ~20 ms for the 8B model), and while :meth:`active` swaps each LoRA module's forward for
``F.linear(x, W, bias)``. The trained model is untouched: the training forward still runs the
base and the adapters separately.

The samples then come from a model that differs from the trained one by the rounding of
``W`` to the compute dtype (bf16: ~0.4 % of each weight, usually far less than a LoRA step
changes). The trainer corrects for it as TRL's GRPO corrects vLLM samples: each token's
policy-gradient weight is multiplied by the truncated importance ratio
``min(p_train / p_sampler, clip_max)`` (:func:`trl_ground.loss.policy_gradient.truncated_importance_weights`).

Costs memory: one dense copy of the adapted linears (about 14 GB for the 8B model in bf16; its
measured step peak grew by 14-16 GB), which is why it is on only where it fits
(``sampler_merged_weights="auto"``, the rule in :mod:`trl_ground.config.performance`, which
counts the copies with :func:`merged_nbytes`) or when asked for (``--sampler-merged-weights``).
Measured on an H200 (BENCHMARKS.md): QLoRA decode 26-27.5 -> 15.1 ms per token, 16-bit LoRA
20.3 -> 16.1.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

__all__ = ["MergedSamplingWeights", "mergeable_lora_linears", "merged_nbytes"]


def mergeable_lora_linears(model) -> list:
    """``[(name, module)]``: the PEFT LoRA modules of ``model`` on linear layers (dense or
    bitsandbytes 4-bit, which subclasses ``nn.Linear``); LoRA on other layers (embeddings,
    convolutions) keeps its own forward while sampling.

    Raises:
        ValueError: there are none (full fine-tuning samples from its own dense weights
            already), or an adapter cannot be folded into one matrix (DoRA, LoRA bias).
    """
    from peft.tuners.lora import LoraLayer

    found = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or not isinstance(module.get_base_layer(), torch.nn.Linear):
            continue
        for adapter in module.active_adapters:
            if module.use_dora.get(adapter, False) or getattr(module, "lora_bias", {}).get(adapter, False):
                raise ValueError(f"{name}: DoRA or LoRA-bias adapters cannot be merged for sampling; turn off --sampler-merged-weights")
        found.append((name, module))
    if not found:
        raise ValueError("--sampler-merged-weights needs LoRA adapters on linear layers; this model has none")
    return found


def merged_nbytes(layers: list, dtype: torch.dtype) -> int:
    """The memory :class:`MergedSamplingWeights` would hold for ``layers`` (those of
    :func:`mergeable_lora_linears`) in ``dtype``, counted without allocating anything:
    ``out_features x in_features`` elements per layer (the same as its :attr:`~MergedSamplingWeights.nbytes`)."""
    element_size = torch.empty((), dtype=dtype).element_size()
    return sum(m.get_base_layer().out_features * m.get_base_layer().in_features for _, m in layers) * element_size


def _dense_base_weight(base_layer, out: torch.Tensor) -> None:
    """Write the base layer's weight ``(out_features, in_features)`` into ``out``: a copy,
    or for a bitsandbytes 4-bit layer its dequantization (bitsandbytes' own, the one its
    matmul runs)."""
    weight = base_layer.weight
    quant_state = getattr(weight, "quant_state", None)
    if quant_state is None:
        out.copy_(weight)
        return
    import bitsandbytes.functional as bnbf

    out.copy_(bnbf.dequantize_4bit(weight.data, quant_state).reshape(out.shape))


class MergedSamplingWeights:
    """Dense merged weights of ``model``'s LoRA linears, for sampling only.

    Args:
        model: a PEFT model (or a model holding LoRA layers).
        dtype: dtype of the merged matrices (the sampling compute dtype: bf16 on a GPU).

    Raises:
        ValueError: see :func:`mergeable_lora_linears`.
    """

    def __init__(self, model, dtype: torch.dtype):
        self.layers = mergeable_lora_linears(model)
        self.dtype = dtype
        self.merged: list[torch.Tensor] = []
        self.biases: list[torch.Tensor | None] = []  # the base biases in ``dtype``: fixed addresses for CUDA graphs
        for _, module in self.layers:
            base = module.get_base_layer()
            self.merged.append(torch.empty((base.out_features, base.in_features), dtype=dtype, device=base.weight.device))
            self.biases.append(None if base.bias is None else torch.empty(base.bias.shape, dtype=dtype, device=base.bias.device))

    @property
    def nbytes(self) -> int:
        """Memory held by the merged copies."""
        return sum(w.numel() * w.element_size() for w in self.merged)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute every merged matrix from the base and the current adapters."""
        for (_, module), merged, bias in zip(self.layers, self.merged, self.biases):
            _dense_base_weight(module.get_base_layer(), merged)
            if bias is not None:
                bias.copy_(module.get_base_layer().bias)
            if module.disable_adapters or module.merged:
                continue  # adapters off, or already inside the base weight
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    merged.add_(module.get_delta_weight(adapter).to(merged.dtype))

    @contextmanager
    def active(self):
        """Inside: each LoRA linear computes ``F.linear(x, merged, base bias)``; every
        module's own forward is back afterwards, also after an error."""
        swapped = []
        try:
            for (_, module), merged, bias in zip(self.layers, self.merged, self.biases):
                swapped.append((module, module.__dict__.get("forward")))
                module.forward = _dense_forward(merged, bias)
            yield self
        finally:
            for module, own in swapped:
                if own is None:
                    del module.forward  # back to the class's forward
                else:
                    module.forward = own


def _dense_forward(weight: torch.Tensor, bias: torch.Tensor | None):
    def forward(x, *args, **kwargs):
        out = F.linear(x.to(weight.dtype), weight, bias)
        return out if torch.is_autocast_enabled(x.device.type) else out.to(x.dtype)

    return forward
