"""Shared-prefix packing of the fused pass: each prompt once, its target and its samples after it.

The fused pass (:mod:`trl_ground.loss.fused_pass`) scores B SFT rows ``[prompt][target]`` and
R = B * K sampled rows ``[prompt][answer]``: every prompt (283 tokens at 448 px, images
included) goes through the model K + 1 times. Packed, each prompt is one row::

    [prompt][target] [p'][answer 1] [p'][answer 2] ... [p'][answer K]

where ``p'`` is a copy of the prompt's last token with its position. An attention mask
``(B, 1, W, W)`` lets ``[prompt][target]`` attend causally as before, and each
``[p'][answer k]`` block attend to the prompt without its last token and causally to
itself, so ``p'`` computes exactly what the prompt's last token computes in an unpacked
row, and its next-token score is the answer's first token's. Positions (Qwen3-VL's 3D
M-RoPE) restart after the prompt in every block, as in the answer's own row. The images go
through the vision tower once (B instead of B + R).

Same loss and gradients as the unpacked pass (tests), for ``P + A_sft + K (1 + A)`` tokens
per prompt instead of ``(K + 1) P + A_sft + K A``: 0.63x at K = 1 and 0.37x at K = 4 for
the step benchmark's shape. Needs an attention kernel that takes a 4D mask (``sdpa``,
``eager``); flash attention ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.qwen3vl import mrope_position_ids
from ..sampling.batches import Samples, sft_prompt_lengths

__all__ = ["PackedRows", "pack_sft_and_samples"]


@dataclass
class PackedRows:
    """Model inputs of the packed pass and where its outputs lie.

    Attributes:
        inputs: ``B`` rows of width ``W``: ``input_ids``, ``labels`` (the SFT labels and the
            answers' tokens), ``attention_mask`` ``(B, 1, W, W)`` bool (True: attend),
            ``position_ids`` ``(3, B, W)``, the images and ``mm_token_type_ids``.
        sft_columns: ``(B, W - 1)`` bool, the fused head's columns that score SFT labels.
        answer_rows: ``(R,)`` the packed row of each answer.
        answer_columns: ``(R, T)`` the column scoring each answer token (0 past its end).
        answer_valid: ``(R, T)`` bool, the answer's tokens up to and including its end.
    """

    inputs: dict
    sft_columns: torch.Tensor
    answer_rows: torch.Tensor
    answer_columns: torch.Tensor
    answer_valid: torch.Tensor

    def answer_logprobs(self, log_probs: torch.Tensor) -> torch.Tensor:
        """``(R, T)`` log-probabilities of the answers' tokens out of the fused head's ``(B, W - 1)``."""
        return log_probs[self.answer_rows.unsqueeze(1), self.answer_columns] * self.answer_valid


def _sft_positions(sft: dict, spatial_merge_size: int | None) -> torch.Tensor:
    """``(3, B, W_sft)`` positions of the SFT rows (M-RoPE with images, else text indices)."""
    mask = sft["attention_mask"]
    if sft.get("mm_token_type_ids") is not None and spatial_merge_size:
        return mrope_position_ids(sft["mm_token_type_ids"], sft.get("image_grid_thw"), mask, spatial_merge_size)[0]
    return (mask.long().cumsum(1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)


def pack_sft_and_samples(
    sft: dict, samples: Samples, k: int, pad_token_id: int, spatial_merge_size: int | None, prompt_lengths: torch.Tensor | None = None
) -> PackedRows:
    """Pack TRL's SFT batch ``sft`` (B rows ``[prompt][target][padding]``) and the ``R = B * k``
    answers of ``samples`` (answer ``r`` continues prompt ``r // k``) into B rows.
    ``prompt_lengths``: ``(B,)`` :func:`~trl_ground.sampling.batches.sft_prompt_lengths` of
    ``sft`` where the caller has them (computed here when None)."""
    ids, labels, attn = sft["input_ids"], sft["labels"], sft["attention_mask"]
    device = ids.device
    positions = _sft_positions(sft, spatial_merge_size)
    mm = sft.get("mm_token_type_ids")
    lengths = attn.sum(dim=1)
    if prompt_lengths is None:
        prompt_lengths = sft_prompt_lengths(sft)
    answer_lengths = samples.completion_mask.sum(dim=1)
    n_answers, width_t = samples.completion_ids.shape
    if n_answers != ids.shape[0] * k:
        raise ValueError(f"{n_answers} answers for {ids.shape[0]} prompts and k = {k}")

    rows, blocks = [], []
    answer_columns = torch.zeros((n_answers, width_t), dtype=torch.long)
    # one device-to-host copy for all the lengths, not one per row
    prompt_lengths_host, lengths_host, answer_lengths_host = (torch.as_tensor(t).tolist() for t in (prompt_lengths, lengths, answer_lengths))
    for b in range(ids.shape[0]):
        p, n = prompt_lengths_host[b], lengths_host[b]
        last = slice(p - 1, p)
        parts = {"ids": [ids[b, :n]], "labels": [labels[b, :n]], "pos": [positions[:, b, :n]]}
        parts["mm"] = [mm[b, :n]] if mm is not None else []
        row_blocks, cursor = [], n
        for r in range(b * k, (b + 1) * k):
            a = answer_lengths_host[r]
            answer = samples.completion_ids[r, :a]
            parts["ids"] += [ids[b, last], answer]
            parts["labels"] += [torch.full((1,), -100, device=device, dtype=labels.dtype), answer.to(labels.dtype)]
            parts["pos"] += [positions[:, b, last], positions[:, b, last] + torch.arange(1, a + 1, device=device)]
            if mm is not None:
                parts["mm"].append(torch.zeros(1 + a, device=device, dtype=mm.dtype))
            answer_columns[r, :a] = torch.arange(cursor, cursor + a)
            row_blocks.append((cursor, 1 + a))
            cursor += 1 + a
        rows.append({key: torch.cat(value, dim=-1) for key, value in parts.items() if value})
        blocks.append((p, n, row_blocks))

    width = max(row["ids"].shape[-1] for row in rows)
    pad = lambda t, value: torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=value)  # noqa: E731
    mask = torch.zeros((len(rows), width, width), dtype=torch.bool, device=device)
    for b, (p, n, row_blocks) in enumerate(blocks):
        mask[b, :n, :n] = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        for start, size in row_blocks:
            mask[b, start : start + size, : p - 1] = True
            mask[b, start : start + size, start : start + size] = torch.ones(size, size, dtype=torch.bool, device=device).tril()
        end = n + sum(size for _, size in row_blocks)
        mask[b, range(end, width), range(end, width)] = True  # padding attends to itself (no empty softmax)
    inputs = {
        "input_ids": torch.stack([pad(row["ids"], pad_token_id) for row in rows]),
        "labels": torch.stack([pad(row["labels"], -100) for row in rows]),
        "attention_mask": mask.unsqueeze(1),
        "position_ids": torch.stack([pad(row["pos"], 0) for row in rows], dim=1),
    }
    if mm is not None:
        inputs["mm_token_type_ids"] = torch.stack([pad(row["mm"], 0) for row in rows])
    for name in ("pixel_values", "image_grid_thw"):
        if sft.get(name) is not None:
            inputs[name] = sft[name]
    sft_columns = torch.zeros((len(rows), width - 1), dtype=torch.bool, device=device)
    for b, (_, n, _) in enumerate(blocks):
        sft_columns[b, : n - 1] = labels[b, 1:n] != -100
    answer_rows = torch.arange(ids.shape[0], device=device).repeat_interleave(k)
    answer_valid = torch.arange(width_t, device=device).unsqueeze(0) < answer_lengths.unsqueeze(1)
    return PackedRows(inputs, sft_columns, answer_rows, answer_columns.to(device), answer_valid)
