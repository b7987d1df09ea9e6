"""The static-cache sampler against model.generate on the tiny model (CPU: eager decode step)."""

import pytest
import torch

from tests.helpers import make_trainer
from trl_ground.sampling.batches import prompts_from_sft_batch
from trl_ground.sampling.generation import sample_answers
from trl_ground.sampling.static import StaticSampler


@pytest.fixture(scope="module")
def setup(tiny_model_dir, synthetic_data, tmp_path_factory):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path_factory.mktemp("fs"))
    batch = next(iter(trainer.get_train_dataloader()))
    tok = trainer.processing_class.tokenizer
    return trainer.model, prompts_from_sft_batch(batch, tok.pad_token_id), tok


def test_greedy_tokens_equal_generate(setup):
    model, prompts, tok = setup
    ref = sample_answers(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False)
    fast = StaticSampler(bucket=16).sample(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False)
    assert torch.equal(fast.completion_ids, ref.completion_ids) and fast.texts == ref.texts
    assert torch.equal(fast.completion_mask, ref.completion_mask) and torch.equal(fast.truncated, ref.truncated)


def test_same_seed_same_samples_and_reuse_across_calls(setup):
    model, prompts, tok = setup
    sampler = StaticSampler(bucket=64)
    for seed in (1, 2):  # the second call reuses the cache built by the first
        torch.manual_seed(seed)
        ref = sample_answers(model, prompts, tok, k=3, temperature=0.8, max_new_tokens=16)
        torch.manual_seed(seed)
        fast = sampler.sample(model, prompts, tok, k=3, temperature=0.8, max_new_tokens=16)
        assert torch.equal(fast.completion_ids, ref.completion_ids)
    assert len(sampler._states) == 1


def test_min_new_tokens_and_image_tokens_suppressed(setup):
    model, prompts, tok = setup
    out = StaticSampler().sample(model, prompts, tok, k=1, max_new_tokens=10, min_new_tokens=10)
    assert out.completion_mask.sum(dim=1).tolist() == [10] * len(prompts)
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    assert not (out.completion_ids == image_pad).any()


def test_cache_shapes_are_bounded_least_recently_used_first(setup):
    model, prompts, tok = setup
    sampler = StaticSampler(bucket=8, max_states=2)
    for new_tokens in (8, 16, 8, 24):  # lengths bucket to 3 distinct shapes; the 16 one is dropped
        sampler.sample(model, prompts, tok, k=1, max_new_tokens=new_tokens, do_sample=False)
    bucket = lambda n: -(-(prompts.input_ids.shape[1] + n) // 8) * 8  # noqa: E731
    assert [key[2] for key in sampler._states] == [bucket(8), bucket(24)]  # least recently used first
