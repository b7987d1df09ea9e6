"""The policy-gradient maths as pure functions."""

import json

import pytest
import torch

from trl_ground.loss.policy_gradient import (
    PromptTypeBaselines,
    RunningBaseline,
    advantages,
    answer_token_logprobs,
    flat_groups,
    permute_answers,
    policy_surrogate,
)


def test_advantages_leave_one_out_and_running_mean():
    cost = torch.tensor([1.0, 3.0, 2.0, 2.0])
    # K = 2: baseline of sample 0 is sample 1's cost -> 1 - 3 = -2; 3 - 1 = 2; 0; 0
    assert advantages(cost, 2, None).tolist() == [-2.0, 2.0, 0.0, 0.0]
    # K = 1: running mean 1.5; without one, the batch mean 2.0
    assert advantages(cost, 1, 1.5).tolist() == [-0.5, 1.5, 0.5, 0.5]
    assert advantages(cost, 1, None).tolist() == [-1.0, 1.0, 0.0, 0.0]


def surrogate_grad(adv, logp, mask, **kw):
    logp = logp.clone().requires_grad_(True)
    value = policy_surrogate(adv, logp, mask, **kw)
    assert value.item() == 0.0
    value.backward()
    return logp.grad


LOGP = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])
ADV = torch.tensor([2.0, -1.0])


def test_surrogate_is_zero_in_value_and_reinforce_in_gradient():
    # grpo: d/dlogp_it = A_i * mask_it / T_i / R
    expected = torch.tensor([[2.0 / 2 / 2, 2.0 / 2 / 2, 0.0], [-1.0 / 3 / 2] * 3])
    torch.testing.assert_close(surrogate_grad(ADV, LOGP, MASK, loss_type="grpo"), expected)
    # dr_grpo: A_i * mask_it / (R * max_new_tokens), R = 2, max_new_tokens = 4
    expected = torch.tensor([[2.0 / 8, 2.0 / 8, 0.0], [-1.0 / 8] * 3])
    torch.testing.assert_close(surrogate_grad(ADV, LOGP, MASK, loss_type="dr_grpo", max_new_tokens=4), expected)
    # dapo: A_i * mask_it / (answer tokens of the micro-batch = 5)
    expected = torch.tensor([[2.0 / 5, 2.0 / 5, 0.0], [-1.0 / 5] * 3])
    torch.testing.assert_close(surrogate_grad(ADV, LOGP, MASK, loss_type="dapo"), expected)
    # per-token advantages equal to the answer's give the same gradient
    for kw in ({"loss_type": "grpo"}, {"loss_type": "dr_grpo", "max_new_tokens": 4}, {"loss_type": "dapo"}):
        torch.testing.assert_close(surrogate_grad(ADV.unsqueeze(1).expand(2, 3), LOGP, MASK, **kw), surrogate_grad(ADV, LOGP, MASK, **kw))
    with pytest.raises(ValueError, match="max_new_tokens"):
        policy_surrogate(ADV, LOGP, MASK, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="loss_type"):
        policy_surrogate(ADV, LOGP, MASK, loss_type="bnpo")


def test_a_short_answer_weighs_per_token_what_a_long_one_does_except_under_grpo():
    """'[]' (2 tokens) against an answer with a box (16 tokens), same |advantage|: Dr. GRPO and
    DAPO give each of their tokens the same weight; GRPO's per-answer mean gives '[]'s 8x."""
    mask = torch.zeros(2, 16)
    mask[0, :2] = 1
    mask[1, :] = 1
    adv = torch.tensor([1.0, 1.0])
    logp = torch.zeros(2, 16)
    for kw in ({"loss_type": "dr_grpo", "max_new_tokens": 16}, {"loss_type": "dapo"}):
        grad = surrogate_grad(adv, logp, mask, **kw)
        assert grad[0, 0] == grad[1, 0] == grad[1, 15] > 0, kw
    grad = surrogate_grad(adv, logp, mask, loss_type="grpo")
    assert grad[0, 0] == pytest.approx(8 * grad[1, 0])


def test_answers_left_out_count_in_no_normalizer():
    keep = torch.tensor([True, False])
    # dr_grpo: R' = 1 kept answer; dapo: its 2 tokens; grpo: T_0 = 2, mean over 1 answer
    for kw, scale in (({"loss_type": "dr_grpo", "max_new_tokens": 4}, 1 / 4), ({"loss_type": "dapo"}, 1 / 2), ({"loss_type": "grpo"}, 1 / 2)):
        grad = surrogate_grad(ADV, LOGP, MASK, keep=keep, **kw)
        torch.testing.assert_close(grad, torch.tensor([[2.0 * scale, 2.0 * scale, 0.0], [0.0, 0.0, 0.0]]))
    grad = surrogate_grad(ADV, LOGP, MASK, keep=torch.tensor([False, False]), loss_type="dapo")  # nothing kept: no gradient
    assert (grad == 0).all()


def test_flat_groups_and_permuted_advantages():
    cost = torch.tensor([0.5, 0.5, 0.5 + 1e-8, 0.2, 0.4, 0.9])
    assert flat_groups(cost, 3).tolist() == [True, False]
    assert flat_groups(cost, 1).tolist() == [False] * 6
    adv, keep = torch.arange(12.0).view(6, 2), torch.tensor([True, True, True, False, False, False])
    a1, k1 = permute_answers(adv, keep, torch.Generator().manual_seed(3))
    a2, k2 = permute_answers(adv, keep, torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2) and torch.equal(k1, k2)  # reproducible from the seed
    assert not torch.equal(a1, adv)
    rows = {tuple(r): k for r, k in zip(adv.tolist(), keep.tolist())}
    assert all(rows[tuple(r)] == k for r, k in zip(a1.tolist(), k1.tolist()))  # rows and keep moved together
    assert sorted(map(tuple, a1.tolist())) == sorted(map(tuple, adv.tolist()))


def test_prompt_type_baselines_keep_one_running_mean_per_type():
    b = PromptTypeBaselines.with_momentum(0.5)
    cost = torch.tensor([0.8, 0.6, 0.1, 0.0])
    has_boxes = torch.tensor([True, True, False, False])
    # before there is one: each type's batch mean
    assert b.per_answer(cost, has_boxes).tolist() == pytest.approx([0.7, 0.7, 0.05, 0.05])
    b.with_boxes.update(torch.tensor([0.7]))
    assert b.per_answer(cost, has_boxes).tolist() == pytest.approx([0.7, 0.7, 0.05, 0.05])
    b.without_boxes.update(torch.tensor([0.2]))
    assert advantages(cost, 1, b.per_answer(cost, has_boxes)).tolist() == pytest.approx([0.1, -0.1, -0.1, -0.2])
    c = PromptTypeBaselines()
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert (c.with_boxes.value, c.without_boxes.value) == pytest.approx((0.7, 0.2))
    # an older checkpoint's single baseline (and its box-quality one) starts both types
    old = {"baseline": {"momentum": 0.9, "value": 0.4}, "box_baseline": {"momentum": 0.9, "value": 0.6}}
    c.load_state_dict(old)
    assert (c.with_boxes.value, c.without_boxes.value, c.with_boxes.momentum) == (0.4, 0.4, 0.9)


def test_answer_token_logprobs_pick_the_answer_columns():
    # rows [p0 p1 p2][a0 a1] : the head scores position j against label j+1 -> a0 at column 2
    per_position = torch.arange(10.0).view(2, 5)[:, :4]
    assert answer_token_logprobs(per_position, prompt_width=3, answer_length=2).tolist() == [[2.0, 3.0], [7.0, 8.0]]


def test_running_baseline_updates_and_round_trips():
    b = RunningBaseline(momentum=0.5)
    b.update(torch.tensor([2.0, 4.0]))
    assert b.value == 3.0
    b.update(torch.tensor([1.0]))
    assert b.value == pytest.approx(2.0)
    c = RunningBaseline()
    c.load_state_dict(b.state_dict())
    assert (c.value, c.momentum) == (b.value, b.momentum)


def test_truncated_importance_weights_are_the_capped_probability_ratio():
    from trl_ground.loss.policy_gradient import truncated_importance_weights

    train = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    sampler = torch.tensor([[-1.0, -3.0, -2.0]])
    weights = truncated_importance_weights(train, sampler, clip_max=3.0)
    assert torch.allclose(weights, torch.tensor([[1.0, torch.e, 3.0]]))  # exp(0), exp(1), exp(1.5) capped
    assert not weights.requires_grad
    # samples drawn at temperature T: the ratio of the tempered distributions' token terms
    hot = truncated_importance_weights(train, sampler, clip_max=100.0, temperature=0.5)
    assert torch.allclose(hot, torch.exp(torch.tensor([[0.0, 2.0, 3.0]])))
