"""One attention call per vision block for a batch of equal-size images.

With SDPA, Qwen3-VL's vision tower attends image by image: a batch of 128 images through 4
blocks is 512 attention calls per forward pass (and as many backward), which dominated the
learning benchmark's step. Qwen3-VL passes the packed images' boundaries (``cu_seqlens``)
only to attention implementations whose name contains "flash" (transformers'
``is_flash_attention_requested``), so :data:`PACKED_VISION_ATTENTION` carries that word:
it is registered through transformers' public ``AttentionInterface`` and runs PyTorch's
SDPA, once over all images when they have the same number of patches, else image by image
(as the default does). :func:`use_packed_vision_attention` switches a loaded model's vision
tower to it; the language model keeps its own implementation.
"""

from __future__ import annotations

import torch

__all__ = ["PACKED_VISION_ATTENTION", "packed_sdpa_attention", "use_packed_vision_attention"]

PACKED_VISION_ATTENTION = "flash_compatible_packed_sdpa"


def packed_sdpa_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask=None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Non-causal attention within each packed image.

    Args:
        query, key, value: ``(1, H, S, D)``: the patches of all images, concatenated.
        cu_seq_lens_q: ``(N + 1,)`` image boundaries in ``S`` (keys use the same).
        max_length_q: the longest image (patches).
    Returns:
        ``((1, S, H, D), None)``, the layout of transformers' attention functions.
    """
    heads, total, dim = query.shape[1:]
    n_images = cu_seq_lens_q.numel() - 1
    if max_length_q * n_images == total:  # all images equal: one batched call
        q, k, v = (t[0].view(heads, n_images, max_length_q, dim).transpose(0, 1) for t in (query, key, value))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling)
        return out.permute(0, 2, 1, 3).reshape(1, total, heads, dim), None
    lengths = (cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).tolist()
    chunks = [
        torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling)
        for q, k, v in zip(*(t.split(lengths, dim=2) for t in (query, key, value)))
    ]
    return torch.cat(chunks, dim=2).transpose(1, 2), None


def use_packed_vision_attention(model) -> bool:
    """Switch the vision tower of a loaded Qwen3-VL (or a PEFT wrapper of one) to
    :func:`packed_sdpa_attention` when it uses SDPA. Returns whether it did."""
    from transformers import AttentionInterface

    config = getattr(getattr(model, "config", None), "vision_config", None)
    if config is None or config._attn_implementation != "sdpa":
        return False
    AttentionInterface.register(PACKED_VISION_ATTENTION, packed_sdpa_attention)
    config._attn_implementation = PACKED_VISION_ATTENTION
    return True
