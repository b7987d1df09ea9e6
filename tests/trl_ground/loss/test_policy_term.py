"""The policy term of the hybrid loss in the trainer (tiny model, CPU): its weight, the groups
without spread, the shuffled-advantage control, K = 8."""

import math

import torch

from tests.helpers import first_batch, force_answers, force_distinct_costs, grads_after_loss, make_trainer

ONE_BOX = '[{"bbox_2d": [100, 100, 300, 300], "label": "ship"}]'
ACCUMULATE_ONCE = ("--gradient-accumulation-steps", "1")


def differ(a: dict, b: dict) -> bool:
    return any(not torch.allclose(a[n], g, rtol=1e-4, atol=1e-6) for n, g in b.items())


def assert_same(a: dict, b: dict) -> None:
    for name, grad in b.items():
        torch.testing.assert_close(a[name], grad, rtol=1e-5, atol=1e-8)


def test_flat_groups_and_a_zero_weight_add_no_policy_gradient(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    """Every answer the same one-box answer: each prompt's K costs are equal, yet with box
    credit the box's tokens carry its (non-zero) marginal contribution. Dropped, the group
    adds nothing to the gradient, like a policy term of weight 0; kept, it does. The loss's
    value is the same in all three: the surrogate is 0."""
    force_answers(monkeypatch, lambda texts: [ONE_BOX] * len(texts))
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, *ACCUMULATE_ONCE, "--num-generations", "2")
    batch = first_batch(trainer)
    results = {}
    for name, weight, drop in (("zero weight", 0.0, False), ("dropped", 1.0, True), ("kept", 1.0, False)):
        trainer.args.policy_loss_weight, trainer.args.drop_flat_groups = weight, drop
        results[name] = grads_after_loss(trainer, batch, seed=3)
    (zero_loss, zero), (dropped_loss, dropped), (kept_loss, kept) = results["zero weight"], results["dropped"], results["kept"]
    assert zero_loss == dropped_loss == kept_loss
    assert_same(dropped, zero)
    assert differ(kept, zero)
    assert trainer._metrics["train"]["flat_group_fraction"][-1] == 1.0


def test_shuffled_advantages_change_the_gradient_not_the_loss_and_are_reproducible(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    force_distinct_costs(monkeypatch)
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, *ACCUMULATE_ONCE, "--num-generations", "2")
    batch = first_batch(trainer)
    loss, grads = grads_after_loss(trainer, batch, seed=5)
    trainer.args.shuffle_advantages = True
    shuffled = []
    for _ in range(2):
        trainer._shuffle_generator.manual_seed(trainer.args.seed)
        shuffled.append(grads_after_loss(trainer, batch, seed=5))
    assert shuffled[0][0] == loss
    assert differ(shuffled[0][1], grads)
    assert_same(shuffled[1][1], shuffled[0][1])


def test_the_loss_types_differ_by_their_normalizer(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    """Answers of one length L (in tokens, the end token included) whose costs differ: the
    policy term's gradient under dr_grpo (Z = R * max_new_tokens) is L / max_new_tokens times
    dapo's (Z = R * L), and grpo's (each answer / L, then the mean) is dapo's."""
    far = ONE_BOX.replace("100, 100, 300, 300", "700, 700, 900, 900")
    force_answers(monkeypatch, lambda texts: [far if i % 2 else ONE_BOX for i in range(len(texts))])
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, *ACCUMULATE_ONCE, "--num-generations", "2")
    batch = first_batch(trainer)
    length = len(trainer.processing_class.tokenizer(ONE_BOX, add_special_tokens=False).input_ids) + 1
    trainer.args.policy_loss_weight = 0.0
    _, without = grads_after_loss(trainer, batch)
    trainer.args.policy_loss_weight = 1.0
    policy = {}
    for loss_type in ("dr_grpo", "dapo", "grpo"):
        trainer.args.policy_loss_type = loss_type
        _, grads = grads_after_loss(trainer, batch)
        policy[loss_type] = {n: g - without[n] for n, g in grads.items()}
    assert differ(policy["dapo"], {n: torch.zeros_like(g) for n, g in without.items()})
    ratio = length / trainer.args.max_completion_length
    for name, grad in policy["dapo"].items():
        torch.testing.assert_close(policy["dr_grpo"][name], ratio * grad, rtol=1e-3, atol=1e-7)
        torch.testing.assert_close(policy["grpo"][name], grad, rtol=1e-3, atol=1e-7)


def test_eight_generations_per_prompt_train_a_step(tiny_model_dir, synthetic_data, tmp_path):
    extra = ("--num-generations", "8", "--batch-size", "2", "--max-steps", "1", "--logging-steps", "1",
             "--eval-strategy", "no", "--save-strategy", "no", "--max-completion-length", "16")
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, *extra)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    log = [r for r in trainer.state.log_history if "lm_loss" in r][0]
    assert math.isfinite(log["loss"]) and 0.0 <= log["flat_group_fraction"] <= 1.0
    assert log["sampled_tokens"] > 0
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if p.requires_grad)
