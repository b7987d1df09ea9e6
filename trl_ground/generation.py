"""Generation with ``model.generate``: token-id helpers, eval mode, sampling answers for a
training step, and greedy answers with per-token log-probabilities for prediction.

The in-loop fast path with the same contract as :func:`sample_answers` is
:class:`trl_ground.static_sampler.StaticSampler`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .batches import PromptBatch, Samples

__all__ = [
    "VISION_TOKENS",
    "completion_mask_until_eos",
    "eos_ids_of",
    "eval_mode",
    "generate_with_logprobs",
    "sample_answers",
    "vision_token_ids",
]

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the image placeholder tokens. An answer must never contain them (the model
    would look for image features that are not there), so generation suppresses them; a
    trained model never emits them, an untrained one can."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
    return [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]


def eos_ids_of(model, tokenizer) -> list[int]:
    """End-of-answer tokens: the generation config's, plus the tokenizer's ``<|im_end|>`` and eos."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end not in ids and im_end != tokenizer.unk_token_id:
        ids.append(im_end)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def completion_mask_until_eos(ids: torch.Tensor, eos_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask (R, T) long, truncated (R,) bool)``: 1 up to and including the first end token
    of each row of ``ids (R, T)``; truncated rows have none."""
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


def generate_with_logprobs(model, prompts: PromptBatch, tokenizer, max_new_tokens: int):
    """Greedy answers with the log-probability of each chosen token (for confidences).

    Returns:
        ``(ids (R, T), mask (R, T), truncated (R,), logprobs (R, T))``.
    """
    eos = eos_ids_of(model, tokenizer)
    with torch.no_grad(), eval_mode(model):
        out = model.generate(
            **prompts.model_inputs(),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            suppress_tokens=vision_token_ids(tokenizer),
            output_scores=True,
            return_dict_in_generate=True,
            use_cache=True,
        )
    ids = out.sequences[:, prompts.input_ids.shape[1] :]
    scores = torch.stack(out.scores, dim=1).float()  # (R, T, vocab), after suppression
    logprobs = torch.log_softmax(scores, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    mask, truncated = completion_mask_until_eos(ids, eos)
    return ids, mask, truncated, logprobs
