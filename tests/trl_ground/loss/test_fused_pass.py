"""The fused pass mirrors TRL's SFT loss: this test fails when TRL's ``SFTTrainer.compute_loss``
and :func:`trl_ground.loss.fused_pass.fused_sft_and_answers` disagree (e.g. after a TRL upgrade)."""

import pytest
import torch
from trl import SFTTrainer

from tests.helpers import first_batch, make_trainer
from trl_ground.loss.fused_pass import answer_logprobs, fused_sft_and_answers
from trl_ground.sampling.batches import prompts_from_sft_batch
from trl_ground.sampling.generation import sample_answers


@pytest.mark.parametrize("normalizer", [None, 37])
def test_fused_lm_loss_equals_trls_sft_loss(tiny_model_dir, synthetic_data, tmp_path, normalizer):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--gradient-accumulation-steps", "1")
    batch = first_batch(trainer)
    sft_inputs = {k: v for k, v in batch.items() if k not in ("gt_boxes", "query_class")}
    tok = trainer.processing_class.tokenizer
    torch.manual_seed(0)
    samples = sample_answers(trainer.model, prompts_from_sft_batch(sft_inputs, tok.pad_token_id), tok, k=2, max_new_tokens=8)
    with torch.no_grad():
        # TRL's own loss, through the parent class (the grounding trainer's override bypassed)
        trl_loss = SFTTrainer.compute_loss(trainer, trainer.model, dict(sft_inputs), num_items_in_batch=normalizer)
        fused = fused_sft_and_answers(trainer.model, dict(sft_inputs), samples, tok.pad_token_id, normalizer, 1, 2)
        separate = answer_logprobs(trainer.model, samples, 2)
    torch.testing.assert_close(fused.lm_loss, trl_loss, rtol=1e-5, atol=1e-6)
    # and the answers' log-probabilities are the separate pass's, token for token
    torch.testing.assert_close(fused.answer_logp * samples.completion_mask, separate * samples.completion_mask, rtol=1e-4, atol=1e-5)
    assert fused.sft_label_mask.sum() == (sft_inputs["labels"][:, 1:] != -100).sum()


@pytest.mark.parametrize("k", [1, 3])
def test_packed_pass_has_the_unpacked_loss_logprobs_and_gradients(tiny_model_dir, synthetic_data, tmp_path, k):
    """Shared-prefix packing (each prompt once, its target and answers after it) changes the
    layout, not the maths: same LM loss, answer log-probabilities, SFT metrics and gradients."""
    from trl_ground.loss.packing import pack_sft_and_samples

    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--gradient-accumulation-steps", "1")
    model = trainer.model
    batch = first_batch(trainer)
    sft_inputs = {key: v for key, v in batch.items() if key not in ("gt_boxes", "query_class")}
    tok = trainer.processing_class.tokenizer
    torch.manual_seed(0)
    samples = sample_answers(model, prompts_from_sft_batch(sft_inputs, tok.pad_token_id), tok, k=k, max_new_tokens=12)
    samples.completion_mask[0, 3:] = 0  # answers of different lengths, one ended early
    params = [p for p in model.parameters() if p.requires_grad]

    def run(pack):
        model.zero_grad()
        fused = fused_sft_and_answers(model, dict(sft_inputs), samples, tok.pad_token_id, 37, 1, 2, pack=pack, k=k)
        mask = samples.completion_mask.float()
        (fused.lm_loss + (fused.answer_logp * mask).sum() * 0.1).backward()
        return fused, [p.grad.clone() for p in params]

    plain, plain_grads = run(False)
    packed, packed_grads = run(True)
    torch.testing.assert_close(packed.lm_loss, plain.lm_loss, rtol=1e-5, atol=1e-6)
    mask = samples.completion_mask.bool()
    torch.testing.assert_close(packed.answer_logp[mask], plain.answer_logp[mask], rtol=1e-4, atol=1e-5)
    assert float(packed.answer_logp.detach()[~mask].abs().sum()) == 0.0
    assert packed.sft_label_mask.sum() == plain.sft_label_mask.sum()
    for name in ("sft_entropy", "sft_is_top1"):
        a, b = getattr(packed, name), getattr(plain, name)
        if a is not None:
            torch.testing.assert_close(a.sum(), b.sum(), rtol=1e-4, atol=1e-4)
    for g_packed, g_plain in zip(packed_grads, plain_grads):
        torch.testing.assert_close(g_packed, g_plain, rtol=1e-4, atol=1e-6)
    # fewer tokens: each prompt once
    packed_rows = pack_sft_and_samples(sft_inputs, samples, k, tok.pad_token_id, 2)
    assert packed_rows.inputs["input_ids"].numel() < sft_inputs["input_ids"].numel() + samples.prompts.input_ids.numel()
