"""The tensors a hybrid step moves around: prompt batches, sampled answers, and the model
inputs built from them.

The SFT batch built by TRL's collator already holds every prompt (followed by its target
answer) and the images, so the prompt-only batch is cut out of it
(:func:`prompts_from_sft_batch`) instead of running the processor twice. Rows of a
:class:`PromptBatch` are repeated ``K`` times for ``K`` samples per prompt, each prompt's
image patches with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.qwen3vl import with_positions

__all__ = [
    "PromptBatch",
    "Samples",
    "answer_inputs",
    "concat_sft_and_samples",
    "prompts_from_sft_batch",
    "sft_answer_ids",
    "sft_prompt_lengths",
]


@dataclass
class PromptBatch:
    """Prompts, left padded, with their images.

    Attributes:
        input_ids: ``(B, P)`` token ids.
        attention_mask: ``(B, P)``, 0 on the left padding.
        pixel_values: ``(sum of patches, D)``, the images of the rows in order, or None.
        image_grid_thw: ``(B, 3)`` (one image per row), or None.
        mm_token_type_ids: ``(B, P)`` or None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    mm_token_type_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def repeat(self, k: int) -> PromptBatch:
        """Every row ``k`` times in a row (``[r0, r0, r1, r1]`` for k = 2), images included."""
        if k == 1:
            return self
        pixel_values = self.pixel_values
        if pixel_values is not None:
            sizes = self.image_grid_thw.prod(dim=-1).tolist()
            pixel_values = torch.cat([chunk for chunk in pixel_values.split(sizes) for _ in range(k)])
        return PromptBatch(
            input_ids=self.input_ids.repeat_interleave(k, dim=0),
            attention_mask=self.attention_mask.repeat_interleave(k, dim=0),
            pixel_values=pixel_values,
            image_grid_thw=None if self.image_grid_thw is None else self.image_grid_thw.repeat_interleave(k, dim=0),
            mm_token_type_ids=None if self.mm_token_type_ids is None else self.mm_token_type_ids.repeat_interleave(k, dim=0),
        )

    def model_inputs(self) -> dict:
        """The keyword arguments of the model's forward / ``generate`` for these prompts."""
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        for name in ("pixel_values", "image_grid_thw", "mm_token_type_ids"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def sft_prompt_lengths(batch: dict) -> torch.Tensor:
    """``(B,)`` prompt length of each row of TRL's SFT batch (rows ``[prompt][answer][padding]``,
    labels -100 up to the answer): the index of its first label, its length without one."""
    is_answer = batch["labels"] != -100
    return torch.where(is_answer.any(dim=1), is_answer.int().argmax(dim=1), batch["attention_mask"].sum(dim=1))


def sft_answer_ids(batch: dict) -> list[list[int]]:
    """The target answer of each row of TRL's SFT batch: its labelled token ids (the answer and
    its closing ``<|im_end|>``), ``B`` lists (the drafts of the speculative sampler)."""
    labels = batch["labels"].tolist()
    return [[t for t in row if t != -100] for row in labels]


def prompts_from_sft_batch(batch: dict, pad_token_id: int, prompt_lengths: torch.Tensor | None = None) -> PromptBatch:
    """Cut the left-padded prompts out of a prompt-completion SFT batch.

    In TRL's batch every row is ``[prompt][answer][padding]`` (flushed left) and the labels
    are -100 up to the answer, so a row's prompt length is the index of its first label:
    ``prompt_lengths`` ``(B,)``, :func:`sft_prompt_lengths` of ``batch``, computed here when
    None (the trainer computes them once per step, for the packed pass too).
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = sft_prompt_lengths(batch) if prompt_lengths is None else prompt_lengths
    width = int(lengths.max())
    # Destination column of each source token: row i's first n_i tokens go to the last n_i columns.
    cols = torch.arange(width, device=ids.device)
    src = cols.unsqueeze(0) - (width - lengths).unsqueeze(1)  # (B, width), < 0 on the padding
    valid = src >= 0
    src = src.clamp(min=0)
    prompt_ids = torch.where(valid, ids.gather(1, src), torch.full_like(src, pad_token_id))
    prompt_mask = torch.where(valid, mask.gather(1, src), torch.zeros_like(src).to(mask.dtype))
    mm = batch.get("mm_token_type_ids")
    prompt_mm = None if mm is None else torch.where(valid, mm.gather(1, src), torch.zeros_like(src).to(mm.dtype))
    return PromptBatch(prompt_ids, prompt_mask, batch.get("pixel_values"), batch.get("image_grid_thw"), prompt_mm)


@dataclass
class Samples:
    """Sampled answers of a :class:`PromptBatch` (already repeated ``K`` times).

    Attributes:
        prompts: the ``R`` prompt rows the answers continue.
        completion_ids: ``(R, T)``, padded with the pad token after the end.
        completion_mask: ``(R, T)``, 1 on the answer's tokens up to and including its end token.
        truncated: ``(R,)`` bool, the answer hit the token limit without ending.
        texts: ``R`` decoded answers.
        sampler_logprobs: ``(R, T)`` log-probability (temperature 1) of each token under the
            model that sampled it, when that model is not exactly the trained one (merged
            sampling weights); None otherwise.
    """

    prompts: PromptBatch
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]
    sampler_logprobs: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())


def answer_inputs(samples: Samples, spatial_merge_size: int | None = None) -> dict:
    """Model inputs (with ``labels`` on the answer tokens only) for the ``[prompt][answer]``
    rows of ``samples``: the prompt occupies columns ``0..P-1``, answer token ``t`` column
    ``P + t``. With ``spatial_merge_size``, also the M-RoPE ``position_ids``."""
    prompts = samples.prompts
    inputs = prompts.model_inputs()
    inputs["input_ids"] = torch.cat([prompts.input_ids, samples.completion_ids], dim=1)
    inputs["attention_mask"] = torch.cat([prompts.attention_mask, samples.completion_mask.to(prompts.attention_mask.dtype)], dim=1)
    if prompts.mm_token_type_ids is not None:
        inputs["mm_token_type_ids"] = torch.cat([prompts.mm_token_type_ids, torch.zeros_like(samples.completion_ids)], dim=1)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, prompts.input_ids.shape[1] :] = samples.completion_ids.masked_fill(samples.completion_mask == 0, -100)
    inputs["labels"] = labels
    return with_positions(inputs, spatial_merge_size)


def _pad_right(t: torch.Tensor, width: int, value) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)


def concat_sft_and_samples(sft: dict, samples: Samples, pad_token_id: int, spatial_merge_size: int | None = None) -> tuple[dict, int]:
    """One batch of the SFT rows followed by the ``[prompt][answer]`` rows of ``samples``
    (padded on the right to a common width), for a single forward pass. Returns
    ``(inputs, number of SFT rows)``; with ``spatial_merge_size`` the inputs carry the
    M-RoPE ``position_ids``."""
    answers = answer_inputs(samples)
    width = max(sft["input_ids"].shape[1], answers["input_ids"].shape[1])
    pads = {"input_ids": pad_token_id, "attention_mask": 0, "labels": -100, "mm_token_type_ids": 0}
    out = {}
    for name, value in pads.items():
        if name in sft and name in answers:
            out[name] = torch.cat([_pad_right(sft[name], width, value), _pad_right(answers[name], width, value)])
    for name in ("pixel_values", "image_grid_thw"):
        if sft.get(name) is not None:
            out[name] = torch.cat([sft[name], answers[name]])
    return with_positions(out, spatial_merge_size), sft["input_ids"].shape[0]
