"""Qwen3-VL's fast paths for whole batches: its multimodal rotary positions (M-RoPE) and its
vision attention, each computed once for a batch instead of row by row or image by image.

**M-RoPE positions.** ``Qwen3VLModel.get_rope_index`` computes them row by row in Python,
with a device-to-host copy per row: ~128 syncs and hundreds of small kernels for a batch of
128. The model takes precomputed ``position_ids`` instead, so the collator computes them
here, vectorized, in the data-loader workers (CPU), and the fused pass and the sampler on
the GPU, without a sync (:func:`with_positions`).

The rule (transformers 5.17-5.24, images only): text tokens get consecutive positions
(the same on the three axes); the tokens of an image with a merged grid ``h x w`` start at
``p`` (the position after the preceding text) and get ``(p, p + row, p + col)``; the text
after the image continues at ``p + max(h, w)``. Padding positions are 0.

**Vision attention.** One attention call per vision block for a batch of equal-size images.
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

from . import MERGE_SIZE, PATCH_SIZE

__all__ = [
    "MERGE_SIZE",
    "PACKED_VISION_ATTENTION",
    "PATCH_SIZE",
    "mrope_position_ids",
    "packed_sdpa_attention",
    "use_packed_vision_attention",
    "with_positions",
]

IMAGE_TOKEN_TYPE = 1
PACKED_VISION_ATTENTION = "flash_compatible_packed_sdpa"


def mrope_position_ids(
    mm_token_type_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    spatial_merge_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and deltas exactly as ``Qwen3VLModel.get_rope_index`` returns them.

    Args:
        mm_token_type_ids: ``(B, L)``: 0 text, 1 image (videos are not supported).
        image_grid_thw: ``(N, 3)`` patch grid of each image, in row-major order of the
            batch's image blocks (the processor's order), or None without images.
        attention_mask: ``(B, L)``, 0 on padding (left or right), or None.
        spatial_merge_size: patches merged per side into one token (2 for Qwen3-VL).
    Returns:
        ``(position_ids (3, B, L) long, deltas (B, 1) long)``: ``deltas`` is the last
        position + 1 minus the number of tokens (what decoding adds to text positions).
    """
    device = mm_token_type_ids.device
    rows, length = mm_token_type_ids.shape
    valid = torch.ones_like(mm_token_type_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    is_image = (mm_token_type_ids == IMAGE_TOKEN_TYPE) & valid
    is_text = valid & ~is_image
    text_before = is_text.long().cumsum(1) - is_text.long()  # text tokens before each token, in its row
    if image_grid_thw is None or image_grid_thw.shape[0] == 0:
        positions = text_before.unsqueeze(0).expand(3, -1, -1)
    else:
        grid = image_grid_thw.to(device)
        grid_h = grid[:, 1] // spatial_merge_size
        grid_w = grid[:, 2] // spatial_merge_size
        extent = torch.maximum(grid_h, grid_w)  # how far the text after an image moves on
        starts = is_image & ~torch.nn.functional.pad(is_image[:, :-1], (1, 0), value=False)
        image_index = (starts.reshape(-1).long().cumsum(0) - 1).view(rows, length).clamp(min=0)
        # offset of each image token inside its image: running count minus the count at its start
        count = is_image.reshape(-1).long().cumsum(0).view(rows, length)
        first = torch.full((grid.shape[0],), count.numel() + 1, dtype=torch.long, device=device)
        first = first.scatter_reduce(0, image_index.reshape(-1), torch.where(is_image, count, first.max()).reshape(-1), "amin")
        offset = count - first[image_index]
        extent_at_start = torch.where(starts, extent[image_index], torch.zeros_like(image_index))
        extents_so_far = extent_at_start.cumsum(1)  # includes the token's own image
        text_position = text_before + extents_so_far
        base = text_position - extent[image_index]
        width = grid_w[image_index].clamp(min=1)
        image_position = torch.stack([base, base + offset // width, base + offset % width])
        positions = torch.where(is_image.unsqueeze(0), image_position, text_position.unsqueeze(0).expand(3, -1, -1))
    positions = torch.where(valid.unsqueeze(0), positions, torch.zeros_like(positions))
    deltas = positions.amax(dim=(0, 2)) + 1 - valid.long().sum(1)
    return positions.contiguous(), deltas.unsqueeze(1)


def with_positions(inputs: dict, spatial_merge_size: int | None) -> dict:
    """``inputs`` plus Qwen3-VL's ``position_ids`` (:func:`mrope_position_ids`), so that the
    model does not compute them row by row; unchanged without ``spatial_merge_size`` or
    ``mm_token_type_ids``."""
    if spatial_merge_size is None or inputs.get("mm_token_type_ids") is None:
        return inputs
    positions, _ = mrope_position_ids(
        inputs["mm_token_type_ids"], inputs.get("image_grid_thw"), inputs.get("attention_mask"), spatial_merge_size
    )
    return {**inputs, "position_ids": positions}


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
