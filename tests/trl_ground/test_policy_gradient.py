"""The policy-gradient maths as pure functions."""

import pytest
import torch

from trl_ground.policy_gradient import RunningBaseline, advantages, answer_token_logprobs, policy_surrogate


def test_advantages_leave_one_out_and_running_mean():
    cost = torch.tensor([1.0, 3.0, 2.0, 2.0])
    # K = 2: baseline of sample 0 is sample 1's cost -> 1 - 3 = -2; 3 - 1 = 2; 0; 0
    assert advantages(cost, 2, None).tolist() == [-2.0, 2.0, 0.0, 0.0]
    # K = 1: running mean 1.5; without one, the batch mean 2.0
    assert advantages(cost, 1, 1.5).tolist() == [-0.5, 1.5, 0.5, 0.5]
    assert advantages(cost, 1, None).tolist() == [-1.0, 1.0, 0.0, 0.0]


def test_surrogate_is_zero_in_value_and_reinforce_in_gradient():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv = torch.tensor([2.0, -1.0])
    value = policy_surrogate(adv, logp, mask)
    assert value.item() == 0.0
    value.backward()
    # d/dlogp_it = A_i * mask_it / T_i / R
    expected = torch.tensor([[2.0 / 2 / 2, 2.0 / 2 / 2, 0.0], [-1.0 / 3 / 2] * 3])
    torch.testing.assert_close(logp.grad, expected)
    # per-token advantages equal to the answer's give the same gradient
    logp.grad = None
    policy_surrogate(adv.unsqueeze(1).expand(2, 3), logp, mask).backward()
    torch.testing.assert_close(logp.grad, expected)


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
    from trl_ground.policy_gradient import truncated_importance_weights

    train = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    sampler = torch.tensor([[-1.0, -3.0, -2.0]])
    weights = truncated_importance_weights(train, sampler, clip_max=3.0)
    assert torch.allclose(weights, torch.tensor([[1.0, torch.e, 3.0]]))  # exp(0), exp(1), exp(1.5) capped
    assert not weights.requires_grad
    # samples drawn at temperature T: the ratio of the tempered distributions' token terms
    hot = truncated_importance_weights(train, sampler, clip_max=100.0, temperature=0.5)
    assert torch.allclose(hot, torch.exp(torch.tensor([[0.0, 2.0, 3.0]])))
