"""Sample answers from the current policy inside a training step, and score their tokens.

The SFT batch built by TRL's collator already holds every prompt (followed by its target
answer) and the images, so the prompt-only batch is cut out of it (:func:`prompts_from_sft_batch`)
instead of running the processor twice. Rows of a :class:`PromptBatch` are repeated ``K``
times for ``K`` samples per prompt, each prompt's image patches with them.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["PromptBatch", "Samples", "completion_logprobs", "prompts_from_sft_batch", "sample_answers"]


@dataclass
class PromptBatch:
    """Prompts, left padded, with their images.

    input_ids, attention_mask: ``(B, P)``. pixel_values: ``(sum of patches, D)``, the
    images of the rows in order. image_grid_thw: ``(B, 3)`` (one image per row).
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
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        for name in ("pixel_values", "image_grid_thw", "mm_token_type_ids"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def prompts_from_sft_batch(batch: dict, pad_token_id: int) -> PromptBatch:
    """Cut the left-padded prompts out of a prompt-completion SFT batch.

    In TRL's batch every row is ``[prompt][answer][padding]`` (flushed left) and the labels
    are -100 up to the answer, so a row's prompt length is the index of its first label.
    """
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    is_answer = labels != -100
    lengths = torch.where(is_answer.any(dim=1), is_answer.int().argmax(dim=1), mask.sum(dim=1))
    width = int(lengths.max())
    rows = ids.shape[0]
    prompt_ids = ids.new_full((rows, width), pad_token_id)
    prompt_mask = mask.new_zeros((rows, width))
    mm = batch.get("mm_token_type_ids")
    prompt_mm = None if mm is None else mm.new_zeros((rows, width))
    for i, n in enumerate(lengths.tolist()):
        prompt_ids[i, width - n :] = ids[i, :n]
        prompt_mask[i, width - n :] = mask[i, :n]
        if mm is not None:
            prompt_mm[i, width - n :] = mm[i, :n]
    return PromptBatch(prompt_ids, prompt_mask, batch.get("pixel_values"), batch.get("image_grid_thw"), prompt_mm)


@dataclass
class Samples:
    """Sampled answers of a :class:`PromptBatch` (already repeated ``K`` times).

    completion_ids: ``(R, T)``, padded with pad after the end. completion_mask: ``(R, T)``,
    1 on the answer's tokens up to and including its end-of-turn token. truncated: ``(R,)``
    bool, the answer hit the token limit without ending. texts: ``R`` decoded answers.
    """

    prompts: PromptBatch
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum())


def completion_mask_until_eos(ids: torch.Tensor, eos_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, truncated)``: 1 up to and including the first end token of each row."""
    is_eos = torch.isin(ids, torch.as_tensor(list(eos_ids), device=ids.device))
    seen_before = (is_eos.cumsum(dim=1) - is_eos.int()) > 0
    return (~seen_before).long(), ~is_eos.any(dim=1)


@contextmanager
def eval_mode(model):
    """Eval mode for generation (dropout off; the KV cache stays on even with gradient
    checkpointing, which disables it only in train mode); restores the mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def sample_answers(
    model,
    prompts: PromptBatch,
    tokenizer,
    k: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    do_sample: bool = True,
    min_new_tokens: int = 0,
) -> Samples:
    """Sample ``k`` answers per prompt with ``model.generate`` (KV cache, no gradient).

    ``min_new_tokens`` forces that many tokens before the end token (benchmarks pin the
    answer length this way).
    """
    eos_ids = eos_ids_of(model, tokenizer)
    rows = prompts.repeat(k)
    with torch.no_grad(), eval_mode(model):
        out = model.generate(
            **rows.model_inputs(),
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_k=0 if do_sample else None,
            top_p=1.0 if do_sample else None,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens or None,
            eos_token_id=eos_ids,
            pad_token_id=tokenizer.pad_token_id,
            suppress_tokens=vision_token_ids(tokenizer),
            use_cache=True,
        )
    completion = out[:, rows.input_ids.shape[1] :]
    mask, truncated = completion_mask_until_eos(completion, eos_ids)
    completion = completion.masked_fill(mask == 0, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(completion, skip_special_tokens=True)
    return Samples(rows, completion, mask, truncated, texts)


VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the image placeholder tokens. An answer must never contain them (the model
    would look for image features that are not there), so sampling suppresses them; a
    trained model never emits them, an untrained one can."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
    return [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]


def eos_ids_of(model, tokenizer) -> list[int]:
    """End-of-answer tokens: the generation config's, plus the tokenizer's ``<|im_end|>``."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end not in ids and im_end != tokenizer.unk_token_id:
        ids.append(im_end)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _answer_inputs(samples: Samples) -> dict:
    """Model inputs (with ``labels`` on the answer tokens only) for ``[prompt][answer]`` rows."""
    prompts = samples.prompts
    inputs = prompts.model_inputs()
    inputs["input_ids"] = torch.cat([prompts.input_ids, samples.completion_ids], dim=1)
    inputs["attention_mask"] = torch.cat([prompts.attention_mask, samples.completion_mask.to(prompts.attention_mask.dtype)], dim=1)
    if prompts.mm_token_type_ids is not None:
        inputs["mm_token_type_ids"] = torch.cat([prompts.mm_token_type_ids, torch.zeros_like(samples.completion_ids)], dim=1)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, prompts.input_ids.shape[1] :] = samples.completion_ids.masked_fill(samples.completion_mask == 0, -100)
    inputs["labels"] = labels
    return inputs


def _pad_right(t: torch.Tensor, width: int, value) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)


def concat_sft_and_samples(sft: dict, samples: Samples, pad_token_id: int) -> tuple[dict, int]:
    """One batch of the SFT rows followed by the ``[prompt][answer]`` rows of ``samples``
    (padded on the right to a common width), for a single forward pass. Returns
    ``(inputs, number of SFT rows)``."""
    answers = _answer_inputs(samples)
    width = max(sft["input_ids"].shape[1], answers["input_ids"].shape[1])
    pads = {"input_ids": pad_token_id, "attention_mask": 0, "labels": -100, "mm_token_type_ids": 0}
    out = {}
    for name, value in pads.items():
        if name in sft and name in answers:
            out[name] = torch.cat([_pad_right(sft[name], width, value), _pad_right(answers[name], width, value)])
    for name in ("pixel_values", "image_grid_thw"):
        if sft.get(name) is not None:
            out[name] = torch.cat([sft[name], answers[name]])
    return out, sft["input_ids"].shape[0]


def completion_logprobs(model, samples: Samples) -> torch.Tensor:
    """Mean log-probability of each sampled answer's tokens under ``model``, with gradient.

    Runs one forward pass over ``[prompt][answer]`` through the fused LM head that TRL's
    ``SFTTrainer`` installs (``fused_lm_head=True``: per-token log-probabilities without the
    ``(R, T, vocab)`` logits). Returns ``(R,)``.
    """
    out = model(**_answer_inputs(samples), fused_lm_head=True, use_cache=False)
    counts = samples.completion_mask.sum(dim=1).clamp(min=1).to(out.log_probs.dtype)
    return out.log_probs.sum(dim=1) / counts

