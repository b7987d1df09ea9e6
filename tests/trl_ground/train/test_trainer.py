"""End-to-end tests of the hybrid trainer on the tiny model (CPU)."""

import json

import pytest
import torch
from trl import SFTTrainer

from tests.helpers import GROUNDING_LOG_KEYS, first_batch, force_distinct_costs, grads_after_loss, make_trainer, trainer_argv
from trl_ground.config import parse_args
from trl_ground.data.collator import GROUNDING_KEYS
from trl_ground.loss.fused_pass import answer_logprobs, spatial_merge_size_of
from trl_ground.loss.policy_gradient import PromptTypeBaselines, grounding_loss
from trl_ground.sampling.batches import prompts_from_sft_batch
from trl_ground.sampling.generation import sample_answers
from trl_ground.train import trainer as trainer_module


def test_literal_mode_has_plain_sft_gradients_and_policy_gradient_differs(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    force_distinct_costs(monkeypatch)
    common = ("--gradient-accumulation-steps", "1", "--add-negatives", "false")
    plain = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "a", "--grounding-loss", "false", *common)
    batch = first_batch(plain)
    plain_loss, plain_grads = grads_after_loss(plain, batch)

    literal = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "b", "--grounding-gradient", "none", *common)
    literal_loss, literal_grads = grads_after_loss(literal, batch)
    assert literal_loss > plain_loss  # the constants change the logged loss ...
    for name, g in plain_grads.items():  # ... and nothing else
        torch.testing.assert_close(literal_grads[name], g, rtol=1e-5, atol=1e-7)

    hybrid = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "c", *common)
    hybrid_loss, hybrid_grads = grads_after_loss(hybrid, batch)
    assert hybrid_loss.item() == pytest.approx(literal_loss.item(), rel=0.3)  # same kind of value (own samples)
    assert any(not torch.allclose(hybrid_grads[n], g) for n, g in plain_grads.items())


def test_sampled_logprobs_match_a_separate_forward_pass(tiny_model_dir, synthetic_data, tmp_path):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path)
    batch = first_batch(trainer)
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(batch, tok.pad_token_id)
    torch.manual_seed(0)
    samples = sample_answers(trainer.model, prompts, tok, k=2, max_new_tokens=12)
    assert len(samples.texts) == 2 * len(prompts)
    token_logp = answer_logprobs(trainer.model, samples)
    assert token_logp.requires_grad and token_logp.shape == samples.completion_ids.shape
    fused = (token_logp * samples.completion_mask).sum(1) / samples.completion_mask.sum(1)
    # reference: plain logits of [prompt][answer], log-softmax, gather, mean over answer tokens
    rows = samples.prompts
    ids = torch.cat([rows.input_ids, samples.completion_ids], dim=1)
    mask = torch.cat([rows.attention_mask, samples.completion_mask], dim=1)
    mm = torch.cat([rows.mm_token_type_ids, torch.zeros_like(samples.completion_ids)], dim=1)
    with torch.no_grad():
        logits = trainer.model(input_ids=ids, attention_mask=mask, pixel_values=rows.pixel_values,
                               image_grid_thw=rows.image_grid_thw, mm_token_type_ids=mm).logits
    p = rows.input_ids.shape[1]
    logp = torch.log_softmax(logits[:, p - 1 : -1].float(), dim=-1).gather(-1, samples.completion_ids.unsqueeze(-1)).squeeze(-1)
    ref = (logp * samples.completion_mask).sum(1) / samples.completion_mask.sum(1)
    torch.testing.assert_close(fused.detach(), ref, rtol=1e-4, atol=1e-4)


def test_prompt_batch_is_the_prompt_part_of_the_sft_batch(tiny_model_dir, synthetic_data, tmp_path):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path)
    batch = first_batch(trainer)
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(batch, tok.pad_token_id)
    for i in range(len(prompts)):
        text = tok.decode(prompts.input_ids[i][prompts.attention_mask[i] == 1])
        assert text.endswith("<|im_start|>assistant\n") and "Locate every" in text
    assert (prompts.attention_mask[:, -1] == 1).all()  # left padded
    rep = prompts.repeat(3)
    assert len(rep) == 3 * len(prompts) and rep.pixel_values.shape[0] == 3 * prompts.pixel_values.shape[0]


def test_demo_trains_saves_and_reloads(tiny_model_dir, synthetic_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from trl_ground.train.job import run_sft

    out = tmp_path / "run"
    args = parse_args(trainer_argv(tiny_model_dir, synthetic_data, out, "--max-steps", "4", "--save-steps", "2", "--logging-steps", "1", "--eval-steps", "4"))
    before = {n: p.detach().clone() for n, p in AutoModelForImageTextToText.from_pretrained(tiny_model_dir).named_parameters()}
    trainer = run_sft(*args)
    logs = trainer.state.log_history
    train_logs = [r for r in logs if "lm_loss" in r]
    assert GROUNDING_LOG_KEYS <= set(train_logs[0])
    assert any("eval_f1" in r and "eval_iou_loss" in r for r in logs)  # greedy eval metrics
    for r in train_logs:  # the logged loss is lm_loss + grounding cost (exactly, with no accumulation)
        assert r["loss"] == pytest.approx(r["lm_loss"] + r["grounding_cost"], rel=1e-3, abs=1e-3)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not list(out.glob(".*"))  # no staging leftovers
    assert (out / "checkpoint-2" / "adapter_model.safetensors").exists()
    assert not (out / "checkpoint-2" / "model.safetensors").exists()  # adapters only

    lora = [(n, p) for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for _, p in lora)  # lora_B starts at zero: the weights moved

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert all(torch.equal(before[n], p) for n, p in base.named_parameters())
    peft_model = PeftModel.from_pretrained(base, out / "final").eval()
    merged = AutoModelForImageTextToText.from_pretrained(out / "final_merged").eval()
    batch = {k: v for k, v in first_batch(trainer).items() if k not in ("gt_boxes", "query_class", "labels")}
    with torch.no_grad():
        a = peft_model(**batch).logits
        b = merged(**batch).logits.float()
        c = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)(**batch).logits
    torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)  # merged in bf16
    assert not torch.allclose(a, c, atol=1e-4)  # and the adapters do something


def test_resume_continues_the_same_run(tiny_model_dir, synthetic_data, tmp_path):
    extra = ("--max-steps", "4", "--save-steps", "2", "--logging-steps", "1", "--eval-strategy", "no")
    full = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "full", *extra)
    full.train()
    resumed = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "resumed", *extra)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    steps = [r["step"] for r in resumed.state.log_history if "lm_loss" in r]
    assert steps == [1, 2, 3, 4]  # the checkpoint's history, then steps 3 and 4: continued, not restarted
    full_last = [r for r in full.state.log_history if r.get("step") == 4 and "lm_loss" in r][0]
    res_last = [r for r in resumed.state.log_history if r.get("step") == 4 and "lm_loss" in r][0]
    assert res_last["lm_loss"] == pytest.approx(full_last["lm_loss"], rel=1e-4)


def test_full_fine_tuning_writes_a_full_model(tiny_model_dir, synthetic_data, tmp_path):
    from transformers import AutoModelForImageTextToText

    from trl_ground.train.job import run_sft

    out = tmp_path / "full"
    args = parse_args(trainer_argv(tiny_model_dir, synthetic_data, out, "--no-use-lora", "--max-steps", "1", "--eval-strategy", "no", "--lr", "0.01"))
    trainer = run_sft(*args)
    assert trainer.args.learning_rate == 0.01
    assert (out / "final" / "model.safetensors").exists() and not (out / "final_merged").exists()
    reloaded = AutoModelForImageTextToText.from_pretrained(out / "final")
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    changed = [n for n, p in reloaded.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert changed  # every weight was trainable; some moved


def two_pass_loss(trainer, batch):
    """The test oracle of the fused step: TRL's own SFT loss, then a second forward pass over
    the sampled answers for their log-probabilities, then the same grounding loss."""
    inputs = dict(batch)
    truth = {k: inputs.pop(k) for k in GROUNDING_KEYS}
    rollout = trainer._collect_rollout(trainer.model, inputs, truth, "train")
    lm_loss = SFTTrainer.compute_loss(trainer, trainer.model, inputs)
    answer_logp = answer_logprobs(trainer.model, rollout.samples, spatial_merge_size_of(trainer.model))
    grounding, _ = grounding_loss(rollout, answer_logp, trainer._policy_loss_settings())
    return lm_loss + grounding


@pytest.mark.parametrize("extra", [(), ("--num-generations", "2", "--credit", "sequence")], ids=["default", "k2-sequence"])
def test_fused_step_gives_the_loss_and_gradients_of_two_passes(tiny_model_dir, synthetic_data, tmp_path, monkeypatch, extra):
    force_distinct_costs(monkeypatch)
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--gradient-accumulation-steps", "1", "--sampler", "generate", *extra)
    batch = first_batch(trainer)
    # LoRA B starts at zero: give it values so that every LoRA gradient is exercised
    with torch.no_grad():
        for n, p in trainer.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    trainer.baselines = PromptTypeBaselines.with_momentum(0.9)
    loss_f, grads_f = grads_after_loss(trainer, batch, seed=7)  # same seed -> same sampled tokens
    trainer.baselines = PromptTypeBaselines.with_momentum(0.9)
    trainer.model.zero_grad()
    torch.manual_seed(7)
    loss_u = two_pass_loss(trainer, batch)
    loss_u.backward()
    torch.testing.assert_close(loss_f, loss_u.detach(), rtol=1e-5, atol=1e-6)
    for n, p in trainer.model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(grads_f[n], p.grad, rtol=1e-4, atol=1e-6)


def test_a_loss_setting_the_fused_pass_does_not_mirror_is_refused(tiny_model_dir, synthetic_data, tmp_path):
    with pytest.raises(ValueError, match="label_smoothing_factor=0.1"):
        make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--label-smoothing-factor", "0.1")
    make_trainer(tiny_model_dir, synthetic_data, tmp_path / "plain", "--label-smoothing-factor", "0.1", "--grounding-loss", "false")
    # the literal mode needs no log-probabilities: SFTTrainer's own loss, whatever its settings
    make_trainer(tiny_model_dir, synthetic_data, tmp_path / "literal", "--label-smoothing-factor", "0.1", "--grounding-gradient", "none")


def test_resumed_k1_run_reproduces_the_uninterrupted_losses(tiny_model_dir, synthetic_data, tmp_path):
    """K = 1 (the shipped qlora / lora16 / full configs): the running baseline is part of the
    checkpoint, so the steps after a resume have the uninterrupted run's losses."""
    extra = ("--num-generations", "1", "--max-steps", "4", "--save-steps", "2", "--logging-steps", "1",
             "--eval-strategy", "no", "--max-completion-length", "24")
    full = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "full", *extra)
    full.train()
    state = json.loads((tmp_path / "full" / "checkpoint-2" / trainer_module.GROUNDING_STATE_FILE).read_text())
    assert state["baseline_with_boxes"]["value"] is not None  # two K = 1 steps have set the baselines
    assert state["baseline_without_boxes"]["value"] is not None
    resumed = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "resumed", *extra)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))

    def logged(trainer):
        return {r["step"]: r for r in trainer.state.log_history if "lm_loss" in r}

    full_logs, resumed_logs = logged(full), logged(resumed)
    for step in (3, 4):
        for key in ("loss", "lm_loss", "grounding_cost"):
            assert resumed_logs[step][key] == pytest.approx(full_logs[step][key], rel=1e-5, abs=1e-6), (step, key)
    assert resumed.baselines.with_boxes.value == pytest.approx(full.baselines.with_boxes.value, rel=1e-6)
    assert resumed.baselines.without_boxes.value == pytest.approx(full.baselines.without_boxes.value, rel=1e-6)


def test_staged_checkpoints_keep_track_of_the_best_one(tiny_model_dir, synthetic_data, tmp_path):
    """load_best_model_at_end with staged checkpoints: the best checkpoint is the real one in
    output_dir (never the staging directory), survives rotation and is loaded at the end."""
    out = tmp_path / "best"
    trainer = make_trainer(
        tiny_model_dir, synthetic_data, out, "--use-lora", "true", "--max-steps", "4", "--save-steps", "1", "--eval-steps", "1",
        "--eval-strategy", "steps", "--save-total-limit", "1", "--load-best-model-at-end", "true",
        "--metric-for-best-model", "eval_loss", "--grounding-loss", "false",
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best and ".staging" not in best and (out / best.split("/")[-1]).is_dir()
    for ckpt in out.glob("checkpoint-*"):
        saved = json.loads((ckpt / "trainer_state.json").read_text())["best_model_checkpoint"]
        assert saved is None or ".staging" not in saved
    assert not (out / ".staging").exists()


def test_packed_samples_train_like_unpacked_ones(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    force_distinct_costs(monkeypatch)
    common = ("--gradient-accumulation-steps", "1", "--num-generations", "2")
    plain = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "a", *common)
    batch = first_batch(plain)
    plain_loss, plain_grads = grads_after_loss(plain, batch)
    packed = make_trainer(tiny_model_dir, synthetic_data, tmp_path / "b", "--pack-samples", "true", *common)
    packed_loss, packed_grads = grads_after_loss(packed, batch)
    torch.testing.assert_close(packed_loss, plain_loss, rtol=1e-5, atol=1e-6)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="pack_samples needs attn_implementation='sdpa'"):
        make_trainer(tiny_model_dir, synthetic_data, tmp_path / "c", "--pack-samples", "true", "--attn-implementation", "eager")
