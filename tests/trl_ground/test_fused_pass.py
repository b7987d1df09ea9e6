"""The fused pass mirrors TRL's SFT loss: this test fails when TRL's ``SFTTrainer.compute_loss``
and :func:`trl_ground.fused_pass.fused_sft_and_answers` disagree (e.g. after a TRL upgrade)."""

import pytest
import torch
from trl import SFTTrainer

from trl_ground.batches import prompts_from_sft_batch
from trl_ground.fused_pass import answer_logprobs, fused_sft_and_answers
from trl_ground.generation import sample_answers

from .test_trainer import first_batch, make_trainer


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
