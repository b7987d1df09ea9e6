"""Merged sampling weights on the tiny LoRA model (CPU, float32): the merged model samples
what the adapted model samples, reports the tokens' log-probabilities, follows adapter
updates, and the trainer corrects its policy gradient with importance weights."""

import pytest
import torch

from tests.helpers import first_batch, make_trainer, perturb_adapters
from trl_ground.loss.fused_pass import answer_logprobs
from trl_ground.sampling.batches import prompts_from_sft_batch
from trl_ground.sampling.merged_weights import MergedSamplingWeights, mergeable_lora_linears, merged_nbytes
from trl_ground.sampling.speculative import SpeculativeSampler
from trl_ground.sampling.static import StaticSampler


@pytest.fixture(scope="module")
def setup(tiny_model_dir, synthetic_data, tmp_path_factory):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path_factory.mktemp("sw"))
    perturb_adapters(trainer.model)
    tok = trainer.processing_class.tokenizer
    return trainer.model, prompts_from_sft_batch(first_batch(trainer), tok.pad_token_id), tok


def test_merged_matrices_are_base_plus_adapters_and_follow_updates(setup):
    model, _, _ = setup
    merged = MergedSamplingWeights(model, torch.float32)
    merged.refresh()
    name, module = merged.layers[0]
    adapter = module.active_adapters[0]
    expected = module.get_base_layer().weight + module.get_delta_weight(adapter)
    assert torch.allclose(merged.merged[0], expected, atol=1e-6)
    assert not torch.allclose(merged.merged[0], module.get_base_layer().weight, atol=1e-4)  # the delta is there
    with torch.no_grad():
        module.lora_B[adapter].weight.mul_(2)
    try:
        merged.refresh()
        assert torch.allclose(merged.merged[0], module.get_base_layer().weight + module.get_delta_weight(adapter), atol=1e-6)
    finally:
        with torch.no_grad():
            module.lora_B[adapter].weight.div_(2)
    assert merged.nbytes == sum(m.get_base_layer().weight.numel() * 4 for _, m in merged.layers)


def test_the_merged_copies_are_counted_without_allocating_them(setup):
    model, _, _ = setup
    layers = mergeable_lora_linears(model)
    assert merged_nbytes(layers, torch.float32) == MergedSamplingWeights(model, torch.float32).nbytes > 0
    assert merged_nbytes(layers, torch.bfloat16) == MergedSamplingWeights(model, torch.bfloat16).nbytes
    assert 2 * merged_nbytes(layers, torch.bfloat16) == merged_nbytes(layers, torch.float32)


def test_merged_sampler_draws_the_adapted_models_tokens_and_their_logprobs(setup):
    model, prompts, tok = setup
    plain = StaticSampler(bucket=16).sample(model, prompts, tok, k=2, max_new_tokens=20, do_sample=False)
    sampler = StaticSampler(bucket=16, merged_weights=True)
    fast = sampler.sample(model, prompts, tok, k=2, max_new_tokens=20, do_sample=False)
    assert torch.equal(fast.completion_ids, plain.completion_ids) and plain.sampler_logprobs is None
    reference = answer_logprobs(model, fast)  # the trained model's own forward
    mask = fast.completion_mask.bool()
    assert torch.allclose(fast.sampler_logprobs[mask], reference.detach()[mask], atol=1e-4)
    # the swap is undone: every LoRA module runs its own forward again
    assert all("forward" not in module.__dict__ for _, module in sampler._merged.layers)
    torch.manual_seed(3)
    a = sampler.sample(model, prompts, tok, k=2, temperature=0.9, max_new_tokens=12)
    torch.manual_seed(3)
    b = StaticSampler(bucket=16).sample(model, prompts, tok, k=2, temperature=0.9, max_new_tokens=12)
    assert torch.equal(a.completion_ids, b.completion_ids)


def test_merged_speculative_sampler_reports_its_tokens_logprobs(setup):
    model, prompts, tok = setup
    plain = StaticSampler(bucket=16).sample(model, prompts, tok, k=2, max_new_tokens=20, do_sample=False)
    targets = [row[row != tok.pad_token_id].tolist()[:12] for row in plain.completion_ids[::2]]  # right for a while, then not
    sampler = SpeculativeSampler(block=3, merged_weights=True, bucket=16)
    fast = sampler.sample(model, prompts, tok, k=2, max_new_tokens=20, do_sample=False, targets=targets)
    assert torch.equal(fast.completion_ids, plain.completion_ids) and sampler.last_stats.accepted > 0
    mask = fast.completion_mask.bool()
    assert torch.allclose(fast.sampler_logprobs[mask], answer_logprobs(model, fast).detach()[mask], atol=1e-4)


def test_a_model_without_lora_is_refused(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="needs LoRA adapters"):
        MergedSamplingWeights(model, torch.float32)


def test_trainer_with_merged_weights_weights_its_policy_gradient(tiny_model_dir, synthetic_data, tmp_path):
    trainer = make_trainer(
        tiny_model_dir, synthetic_data, tmp_path, "--sampler-merged-weights", "true", "--gradient-accumulation-steps", "1",
        "--vllm-importance-sampling-clip-max", "2.0",
    )
    perturb_adapters(trainer.model)
    batch = first_batch(trainer)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    assert torch.isfinite(loss)
    metrics = {k: sum(v) / len(v) for k, v in trainer._metrics["train"].items()}
    assert metrics["sampling/logp_gap_abs_mean"] < 1e-3  # float32: the merged model is the trained one
    assert metrics["sampling/importance_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["sampling/importance_weight_clipped"] == 0.0


def test_the_swap_is_undone_after_an_error_and_bad_setups_are_refused_early(setup, tiny_model_dir, synthetic_data, tmp_path):
    model, _, _ = setup
    merged = MergedSamplingWeights(model, torch.float32)
    with pytest.raises(RuntimeError, match="boom"):
        with merged.active():
            raise RuntimeError("boom")
    assert all("forward" not in module.__dict__ for _, module in merged.layers)
    with pytest.raises(ValueError, match="needs sampler='static'"):
        make_trainer(tiny_model_dir, synthetic_data, tmp_path / "a", "--sampler-merged-weights", "true", "--sampler", "generate")
    with pytest.raises(ValueError, match="needs LoRA adapters"):  # at the trainer's start, not the first sampling step
        make_trainer(tiny_model_dir, synthetic_data, tmp_path / "b", "--sampler-merged-weights", "true", "--use-lora", "false")
