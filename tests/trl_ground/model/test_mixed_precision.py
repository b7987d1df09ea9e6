"""Mixed precision: full fine-tuning keeps fp32 master weights under bf16 autocast, and the
static sampler decodes an fp32 model under autocast (CPU autocast here; the CUDA version is
in the GPU tier)."""

import pytest
import torch

from tests.helpers import make_trainer
from trl_ground.config import ModelArguments
from trl_ground.model import loading as modeling
from trl_ground.sampling.batches import prompts_from_sft_batch
from trl_ground.sampling.static import StaticSampler


def test_weight_dtype_full_fine_tuning_is_fp32_lora_base_is_the_compute_dtype(monkeypatch):
    monkeypatch.setattr(modeling, "compute_dtype", lambda: torch.bfloat16)  # as on a bf16 GPU
    assert modeling.weight_dtype(ModelArguments(use_lora=False, load_in_4bit=False)) == torch.float32
    assert modeling.weight_dtype(ModelArguments(use_lora=True)) == torch.bfloat16


def _one_step_moves(tiny_model_dir, synthetic_data, out, monkeypatch):
    """Full fine-tuning under bf16 autocast (as on a GPU), one AdamW step at LR 5e-5: how far
    each element of a weight set to 0.2 before the step moved, and the weight's dtype."""
    monkeypatch.setattr(modeling, "compute_dtype", lambda: torch.bfloat16)
    trainer = make_trainer(
        tiny_model_dir, synthetic_data, out, "--use-lora", "false", "--bf16", "true", "--use-cpu", "true", "--grounding-loss", "false",
        "--lr", "5e-5", "--weight-decay", "0", "--max-steps", "1", "--warmup-steps", "0", "--lr-scheduler-type", "constant",
        "--gradient-accumulation-steps", "1", "--save-strategy", "no", "--eval-strategy", "no",
    )
    weight = trainer.model.model.language_model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        weight.fill_(0.2)
    trainer.train()
    return (weight.detach() - 0.2).abs(), weight.dtype


def test_full_fine_tuning_step_at_lr_5e_5_moves_a_weight_of_0_2(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    moved, dtype = _one_step_moves(tiny_model_dir, synthetic_data, tmp_path, monkeypatch)
    assert dtype == torch.float32
    # Adam's first step: lr * g / (|g| + eps), lr for every element whose gradient is not tiny
    assert moved.max().item() == pytest.approx(5e-5, rel=0.01)
    assert (moved > 1e-5).float().mean().item() > 0.9
    # bf16 weights could not hold it: 0.2's neighbours in bf16 are ~1e-3 away
    assert torch.tensor(0.2 + 5e-5, dtype=torch.bfloat16) == torch.tensor(0.2, dtype=torch.bfloat16)


def test_static_sampler_decodes_an_fp32_model_under_bf16_autocast(tiny_model_dir, synthetic_data, tmp_path):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path)
    model = trainer.model.float()
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(next(iter(trainer.get_train_dataloader())), tok.pad_token_id)
    sampler = StaticSampler(bucket=16)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        out = sampler.sample(model, prompts, tok, k=2, max_new_tokens=8, min_new_tokens=8)
    assert out.completion_mask.sum().item() == 8 * 2 * len(prompts)
    (state,) = sampler._states.values()
    layers = [layer for layer in state.cache.layers if getattr(layer, "is_initialized", False)]
    assert layers and all(layer.keys.dtype == layer.values.dtype == torch.bfloat16 for layer in layers)
    plain = sampler.sample(model, prompts, tok, k=1, max_new_tokens=4)  # without autocast: a cache of its own, fp32
    assert plain.completion_ids.shape[0] == len(prompts) and len(sampler._states) == 2


def test_an_fp32_model_samples_without_autocast_a_bf16_base_with_it(tiny_model_dir, synthetic_data, tmp_path):
    import contextlib
    import types

    from trl_ground.sampling.decoding import sampling_autocast

    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path)  # LoRA on the fp32 tiny model
    args, cuda = types.SimpleNamespace(bf16=True, fp16=False), torch.device("cuda")
    assert isinstance(sampling_autocast(args, cuda, trainer.model), contextlib.nullcontext)
    trainer.model.get_base_model().get_input_embeddings().to(torch.bfloat16)  # as a bf16 base
    assert isinstance(sampling_autocast(args, cuda, trainer.model), torch.autocast)
    assert isinstance(sampling_autocast(args, torch.device("cpu"), trainer.model), contextlib.nullcontext)
