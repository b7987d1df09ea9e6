"""The GPU tier (``pytest -m gpu`` on a CUDA machine; skipped elsewhere): the paths that only
run on a GPU: the CUDA-graph decode step, the 4-bit load and training step, the packed
vision attention and the batched positions in bf16 on the device."""

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def trainer(tiny_model_dir, synthetic_data, tmp_path_factory):
    from tests.helpers import make_trainer

    return make_trainer(tiny_model_dir, synthetic_data, tmp_path_factory.mktemp("gpu"), "--bf16", "false")


def test_static_sampler_with_cuda_graph_equals_generate(trainer):
    from trl_ground.sampling.batches import prompts_from_sft_batch
    from trl_ground.sampling.generation import sample_answers
    from trl_ground.sampling.static import StaticSampler

    model = trainer.model.to("cuda").float()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(batch, tok.pad_token_id)
    sampler = StaticSampler(bucket=16)
    ref = sample_answers(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False)
    fast = sampler.sample(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False)
    assert all(state.graph is not None for state in sampler._states.values())  # the decode step was replayed from a graph
    assert torch.equal(fast.completion_ids, ref.completion_ids)
    torch.manual_seed(3)
    a = sampler.sample(model, prompts, tok, k=2, temperature=0.8, max_new_tokens=16)
    torch.manual_seed(3)
    b = sample_answers(model, prompts, tok, k=2, temperature=0.8, max_new_tokens=16)
    assert torch.equal(a.completion_ids, b.completion_ids)  # sampling: same arithmetic as generate


def test_qlora_trains_a_step_and_saves(tiny_model_dir, synthetic_data, tmp_path):
    from tests.helpers import REPO
    from trl_ground.config import parse_args
    from trl_ground.train.job import run_sft

    train, test, root = synthetic_data
    trainer = run_sft(*parse_args([
        "--config", str(REPO / "configs/demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0", "--eval-strategy", "no",
        "--output-dir", str(tmp_path), "--use-lora", "true", "--lora-r", "8", "--lora-alpha", "16",
        "--load-in-4bit", "true", "--bf16", "true", "--max-steps", "2",
    ]))
    assert any(type(m).__name__ == "Linear4bit" for m in trainer.model.modules())
    assert (tmp_path / "final" / "adapter_model.safetensors").exists() and (tmp_path / "final_merged" / "model.safetensors").exists()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in trainer.state.log_history if "loss" in r)


def test_packed_vision_attention_and_positions_in_bf16_on_the_gpu(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    from trl_ground.model.qwen3vl import use_packed_vision_attention

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).cuda().eval()
    cfg = model.config.vision_config
    grid = torch.tensor([[1, 8, 8]] * 6, device="cuda")
    pixels = torch.randn(int(grid.prod(-1).sum()), cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2,
                         device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        ref = model.model.visual(pixels, grid_thw=grid).pooler_output.float()
        assert use_packed_vision_attention(model)
        out = model.model.visual(pixels, grid_thw=grid).pooler_output.float()
    assert (out - ref).norm() / ref.norm() < 1e-2  # bf16: two attention kernels, same maths


def test_merged_sampling_weights_of_a_4bit_model_sample_its_tokens(tiny_model_dir, synthetic_data, tmp_path):
    """The 4-bit path of the merged weights (bitsandbytes' dequantization + the adapters, in
    bf16), replayed from a CUDA graph: the sampled tokens' log-probabilities close to the
    training forward's (teacher-forced: in bf16 one near tie flipped by rounding changes the
    rest of a free-running row), and an importance-weighted training step."""
    from tests.helpers import make_trainer, perturb_adapters
    from trl_ground.loss.fused_pass import answer_logprobs
    from trl_ground.sampling.batches import prompts_from_sft_batch
    from trl_ground.sampling.decoding import sampling_autocast
    from trl_ground.sampling.static import StaticSampler

    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--load-in-4bit", "true", "--bf16", "true",
                           "--sampler-merged-weights", "true", "--gradient-accumulation-steps", "1")
    model = trainer.model
    perturb_adapters(model)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(batch, tok.pad_token_id)
    with sampling_autocast(trainer.args, prompts.input_ids.device):
        sampler = StaticSampler(bucket=16, merged_weights=True)
        merged = sampler.sample(model, prompts, tok, k=2, max_new_tokens=16, do_sample=False)
        reference = answer_logprobs(model, merged).detach()
    assert all(state.graph is not None for state in sampler._states.values())
    mask = merged.completion_mask.bool()
    assert (merged.sampler_logprobs - reference)[mask].abs().mean() < 0.05
    with trainer.accelerator.autocast():
        loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    assert torch.isfinite(loss) and 0.9 < trainer._metrics["train"]["sampling/importance_weight_mean"][-1] < 1.1


def test_speculative_sampler_and_packed_pass_on_the_gpu(trainer):
    """The speculative sampler (its verify step graph-captured) against ``generate`` (greedy, float32 on CUDA: drafts from generate's own answers
    are all accepted) and the packed fused pass against the unpacked one (SDPA with a 4D mask)."""
    from trl_ground.loss.fused_pass import fused_sft_and_answers
    from trl_ground.sampling.batches import prompts_from_sft_batch
    from trl_ground.sampling.generation import sample_answers
    from trl_ground.sampling.speculative import speculative_sample

    model = trainer.model.to("cuda").float()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(batch, tok.pad_token_id)
    ref = sample_answers(model, prompts, tok, k=1, max_new_tokens=24, do_sample=False)
    targets = [row[m.bool()].tolist() for row, m in zip(ref.completion_ids, ref.completion_mask)]
    fast, stats = speculative_sample(model, prompts, tok, targets, max_new_tokens=24, do_sample=False, block=4)
    assert torch.equal(fast.completion_ids, ref.completion_ids) and stats.tokens_per_step > 3.0
    assert stats.decode_steps >= 2  # the second verify step was captured and replayed
    sft_inputs = {k: v for k, v in batch.items() if k not in ("gt_boxes", "query_class")}
    with torch.no_grad():
        plain = fused_sft_and_answers(model, dict(sft_inputs), ref, tok.pad_token_id, None, 1, 2)
        packed = fused_sft_and_answers(model, dict(sft_inputs), ref, tok.pad_token_id, None, 1, 2, pack=True, k=1)
    torch.testing.assert_close(packed.lm_loss, plain.lm_loss, rtol=1e-4, atol=1e-5)
    mask = ref.completion_mask.bool()
    torch.testing.assert_close(packed.answer_logp[mask], plain.answer_logp[mask], rtol=1e-3, atol=1e-4)


def test_full_fine_tuning_keeps_fp32_masters_and_samples_under_bf16_autocast(tiny_model_dir, synthetic_data, tmp_path):
    """Full fine-tuning on a bf16 GPU: fp32 weights, bf16 autocast for the training forward,
    the hybrid step's static sampler (CUDA graph) on the fp32 model in fp32 (under autocast
    its cache once got fp32 keys and bf16 values: ``index_copy_(): Float and BFloat16``),
    and an AdamW step of 5e-5 that moves a weight of 0.2."""
    from tests.helpers import make_trainer

    trainer = make_trainer(
        tiny_model_dir, synthetic_data, tmp_path, "--use-lora", "false", "--bf16", "true", "--lr", "5e-5", "--weight-decay", "0",
        "--max-steps", "1", "--warmup-steps", "0", "--lr-scheduler-type", "constant", "--gradient-accumulation-steps", "1",
        "--save-strategy", "no", "--eval-strategy", "no", "--max-completion-length", "16",
    )
    weight = trainer.model.model.language_model.layers[0].mlp.down_proj.weight
    assert weight.dtype == torch.float32 and trainer.args.bf16
    with torch.no_grad():
        weight.fill_(0.2)
    trainer.train()
    assert trainer.sampler._states, "the hybrid step sampled with the static sampler"
    for state in trainer.sampler._states.values():
        assert all(layer.keys.dtype == torch.float32 for layer in state.cache.layers if getattr(layer, "is_initialized", False))
    moved = (weight.detach() - 0.2).abs()
    assert moved.max().item() > 4e-5 and (moved > 1e-5).float().mean().item() > 0.9


def test_static_sampler_decodes_an_fp32_model_under_bf16_autocast_on_the_gpu(trainer):
    """Sampling under autocast (what ``sampling_autocast`` does for a bf16 base) on an fp32
    model: keys and values both stored in bf16, finite logits, the CUDA graph replayed."""
    from trl_ground.sampling.batches import prompts_from_sft_batch
    from trl_ground.sampling.static import StaticSampler

    model = trainer.model.to("cuda").float()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(batch, tok.pad_token_id)
    sampler = StaticSampler(bucket=16)
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        out = sampler.sample(model, prompts, tok, k=4, max_new_tokens=16, min_new_tokens=16)
    assert out.completion_mask.sum().item() == 16 * 4 * len(prompts)
    (state,) = sampler._states.values()
    assert state.graph is not None
    assert all(layer.values.dtype == torch.bfloat16 for layer in state.cache.layers if getattr(layer, "is_initialized", False))


def test_compiled_and_captured_decode_steps_equal_generate(trainer):
    """``torch.compile`` before the CUDA-graph capture (``--sampler-compile``):
    the static sampler's and the speculative verify step's greedy tokens are ``generate``'s,
    with every shape compiled and captured."""
    from trl_ground.sampling.batches import prompts_from_sft_batch
    from trl_ground.sampling.generation import sample_answers
    from trl_ground.sampling.speculative import SpeculativeSampler
    from trl_ground.sampling.static import StaticSampler

    model = trainer.model.to("cuda").float()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(batch, tok.pad_token_id)
    ref = sample_answers(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False)
    static = StaticSampler(bucket=16, compile=True)
    for _ in range(2):
        out = static.sample(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False)
        assert torch.equal(out.completion_ids, ref.completion_ids)
    assert not static.graphs.compile_failed and all(s.graph is not None and s.compiled for s in static.graphs.states.values())
    targets = [row[m.bool()].tolist()[:10] for row, m in zip(ref.completion_ids[::2], ref.completion_mask[::2])]
    speculative = SpeculativeSampler(block=3, compile=True, bucket=16)
    out = speculative.sample(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False, targets=targets)
    assert torch.equal(out.completion_ids, ref.completion_ids) and speculative.last_stats.accepted > 0
    assert not speculative.graphs.compile_failed
    assert all(s.graph is not None and s.compiled for s in speculative.graphs.states.values())


def test_qlora_hybrid_step_with_every_speed_switch(tiny_model_dir, synthetic_data, tmp_path):
    """The 4-bit hybrid step with the speculative sampler, merged weights, the compiled and
    captured verify step and shared-prefix packing together: finite loss, importance weights
    near 1, the verify step replayed from a graph."""
    from tests.helpers import make_trainer

    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--load-in-4bit", "true", "--bf16", "true",
                           "--sampler", "speculative", "--sampler-merged-weights", "true", "--sampler-compile", "true",
                           "--pack-samples", "true", "--max-steps", "2", "--save-strategy", "no", "--eval-strategy", "no",
                           "--gradient-accumulation-steps", "1", "--max-completion-length", "16", "--logging-steps", "1")
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(x)) for x in losses)
    weights = [r["sampling/importance_weight_mean"] for r in trainer.state.log_history if "sampling/importance_weight_mean" in r]
    assert weights and all(0.8 < w < 1.2 for w in weights)
    sampler = trainer.sampler
    assert type(sampler).__name__ == "SpeculativeSampler" and not sampler.graphs.compile_failed
    assert sampler.graphs.states and all(s.graph is not None for s in sampler.graphs.states.values())
