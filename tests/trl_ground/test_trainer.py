"""End-to-end tests of the hybrid trainer on the tiny model (CPU)."""

import json

import pytest
import torch

from trl_ground import trainer as trainer_module
from trl_ground.config import parse_sft_args
from trl_ground.sampling import completion_logprobs, prompts_from_sft_batch, sample_answers
from trl_ground.train import build_trainer
from trl_ground.trainer import advantages

from ..conftest import REPO

GROUNDING_LOG_KEYS = {
    "loss", "lm_loss", "iou_loss", "fp_loss", "fn_loss", "f1", "grounding_cost", "grounding_cost_std",
    "grounding_cost_group_std", "sampled_tokens", "sample_seconds",
}


def argv(tiny_model_dir, synthetic_data, out, *extra):
    train, test, root = synthetic_data
    return [
        "--config", str(REPO / "configs/demo.yaml"),
        "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0",
        "--output-dir", str(out), *extra,
    ]


def make_trainer(tiny_model_dir, synthetic_data, out, *extra):
    return build_trainer(*parse_sft_args(argv(tiny_model_dir, synthetic_data, out, *extra)))


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def test_advantages_leave_one_out_and_running_mean():
    cost = torch.tensor([1.0, 3.0, 2.0, 2.0])
    # K = 2: baseline of sample 0 is sample 1's cost -> 1 - 3 = -2; 3 - 1 = 2; 0; 0
    assert advantages(cost, 2, None).tolist() == [-2.0, 2.0, 0.0, 0.0]
    # K = 1: running mean 1.5; without one, the batch mean 2.0
    assert advantages(cost, 1, 1.5).tolist() == [-0.5, 1.5, 0.5, 0.5]
    assert advantages(cost, 1, None).tolist() == [-1.0, 1.0, 0.0, 0.0]


def grads_after_loss(trainer, batch, seed=0):
    model = trainer.model
    model.zero_grad()
    torch.manual_seed(seed)
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def force_distinct_costs(monkeypatch):
    """Replace every other sampled answer with one full of false positives, so costs (and
    advantages) differ whatever the random model writes."""
    real = trainer_module.GroundingSFTTrainer._sample

    def patched(self, model, prompts, tokenizer, **kw):
        samples = real(self, model, prompts, tokenizer, **kw)
        spam = "[" + ", ".join(['{"bbox_2d": [0, 0, 10, 10]}'] * 6) + "]"
        samples.texts = [spam if i % 2 else t for i, t in enumerate(samples.texts)]
        return samples

    monkeypatch.setattr(trainer_module.GroundingSFTTrainer, "_sample", patched)


def test_seed_literal_mode_has_plain_sft_gradients_and_policy_gradient_differs(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
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
    fused = completion_logprobs(trainer.model, samples)
    assert fused.requires_grad
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

    from trl_ground.train import run_sft

    out = tmp_path / "run"
    args = parse_sft_args(argv(tiny_model_dir, synthetic_data, out, "--max-steps", "4", "--save-steps", "2", "--logging-steps", "1", "--eval-steps", "4"))
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


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--lora-r", "0"), "lora_r"),
        (("--grounding-gradient", "sometimes"), "grounding_gradient"),
        (("--samples-per-prompt", "0"), "samples_per_prompt"),
        (("--no-use-lora", "--load-in-4bit", "true"), "load_in_4bit needs use_lora"),
        (("--iou-loss-weight", "-1"), "iou_loss_weight"),
    ],
)
def test_bad_configs_fail_before_loading(extra, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        parse_sft_args(["--config", str(REPO / "configs/demo.yaml"), "--output-dir", str(tmp_path), *extra])


def test_unknown_yaml_key_and_cli_flag_fail(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: x\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_sft_args(["--config", str(cfg)])
    with pytest.raises(ValueError, match="--no-such-flag"):
        parse_sft_args(["--no-such-flag", "1"])


def test_seed_flags_and_defaults():
    data, model, cfg = parse_sft_args(["--batch-size", "3", "--epochs", "2", "--lora-r", "8", "--no-use-lora", "--no-load-in-4bit"])
    assert (cfg.per_device_train_batch_size, cfg.num_train_epochs, model.lora_r, model.use_lora) == (3, 2, 8, False)
    assert cfg.learning_rate == 2e-5  # full fine-tuning default
    _, model, cfg = parse_sft_args([])
    assert model.model == "unsloth/Qwen3-VL-8B-Instruct" and model.use_lora and model.load_in_4bit
    assert (cfg.per_device_train_batch_size, cfg.num_train_epochs, cfg.learning_rate) == (2, 3, 2e-4)
    assert (model.lora_r, model.lora_alpha, model.lora_dropout) == (16, 16, 0.0)
    assert (cfg.iou_loss_weight, cfg.fp_loss_weight, cfg.fn_loss_weight) == (1.0, 0.5, 1.0)
    assert (cfg.gradient_accumulation_steps, cfg.save_steps, cfg.logging_steps) == (4, 100, 10)
    _, _, cfg = parse_sft_args(["--lr", "0.01"])
    assert cfg.learning_rate == 0.01


def test_yaml_accepts_seed_names(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"batch_size": 5, "lr": 0.003, "epochs": 1}))
    _, _, c = parse_sft_args(["--config", str(cfg)])
    assert (c.per_device_train_batch_size, c.learning_rate, c.num_train_epochs) == (5, 0.003, 1)


@pytest.mark.parametrize("name", ["qlora", "lora16", "full", "demo"])
def test_shipped_configs_parse(name):
    data, model, cfg = parse_sft_args(["--config", str(REPO / "configs" / f"{name}.yaml")])
    assert cfg.grounding_gradient == "policy_gradient" and data.img_root
    assert model.load_in_4bit == (name == "qlora") and model.use_lora == (name != "full")


def test_full_fine_tuning_writes_a_full_model(tiny_model_dir, synthetic_data, tmp_path):
    from transformers import AutoModelForImageTextToText

    from trl_ground.train import run_sft

    out = tmp_path / "full"
    args = parse_sft_args(argv(tiny_model_dir, synthetic_data, out, "--no-use-lora", "--max-steps", "1", "--eval-strategy", "no", "--lr", "0.01"))
    trainer = run_sft(*args)
    assert trainer.args.learning_rate == 0.01
    assert (out / "final" / "model.safetensors").exists() and not (out / "final_merged").exists()
    reloaded = AutoModelForImageTextToText.from_pretrained(out / "final")
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    changed = [n for n, p in reloaded.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert changed  # every weight was trainable; some moved


def test_fused_pass_gives_the_same_loss_and_gradients_as_two_passes(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    force_distinct_costs(monkeypatch)
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--gradient-accumulation-steps", "1", "--sampler", "generate")
    batch = first_batch(trainer)
    # LoRA B starts at zero: give it values so that every LoRA gradient is exercised
    with torch.no_grad():
        for n, p in trainer.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    results = {}
    for fuse in (True, False):
        trainer.args.fuse_logprob_pass = fuse
        trainer._running_baseline = None
        results[fuse] = grads_after_loss(trainer, batch, seed=7)  # same seed -> same sampled tokens
    (loss_f, grads_f), (loss_u, grads_u) = results[True], results[False]
    torch.testing.assert_close(loss_f, loss_u, rtol=1e-5, atol=1e-6)
    for n, g in grads_u.items():
        torch.testing.assert_close(grads_f[n], g, rtol=1e-4, atol=1e-6)
