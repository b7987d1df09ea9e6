"""Qwen3-VL's multimodal rotary positions (M-RoPE) for a whole batch at once.

``Qwen3VLModel.get_rope_index`` computes them row by row in Python, with a device-to-host
copy per row: ~128 syncs and hundreds of small kernels for a batch of 128. The model takes
precomputed ``position_ids`` instead, so the collator computes them here, vectorized, in the
data-loader workers (CPU), and the fused pass and the sampler on the GPU, without a sync.

The rule (transformers 5.17-5.24, images only): text tokens get consecutive positions
(the same on the three axes); the tokens of an image with a merged grid ``h x w`` start at
``p`` (the position after the preceding text) and get ``(p, p + row, p + col)``; the text
after the image continues at ``p + max(h, w)``. Padding positions are 0.
"""

from __future__ import annotations

import torch

__all__ = ["mrope_position_ids"]

IMAGE_TOKEN_TYPE = 1


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
