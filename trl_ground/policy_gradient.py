"""The policy-gradient maths of the hybrid loss, as pure functions of tensors.

The grounding cost of a sampled answer is computed on its parsed text, so it has no
gradient of its own. The hybrid loss adds it together with a surrogate whose value is 0 and
whose gradient is REINFORCE with a baseline::

    A_i        = cost_i - baseline_i
    surrogate  = mean_i  sum_t A_it * (logp_it - stopgrad(logp_it)) / T_i

``logp_it`` is the log-probability of token ``t`` of answer ``i`` under the current model,
``T_i`` the answer's length and ``A_it`` the advantage its token carries (``A_i`` for every
token with sequence-level credit). Minimizing it makes answers that cost more than their
baseline less likely.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RunningBaseline", "advantages", "answer_token_logprobs", "policy_surrogate", "truncated_importance_weights"]


def advantages(cost: torch.Tensor, k: int, running_baseline: float | None) -> torch.Tensor:
    """``A_i = cost_i - baseline_i`` for ``cost (B*K,)`` grouped by prompt (K consecutive).

    K > 1: the baseline is the mean cost of the other samples of the same prompt.
    K = 1: the running mean ``running_baseline`` (the batch mean before there is one).
    """
    if k > 1:
        groups = cost.view(-1, k)
        others = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
        return (groups - others).reshape(-1)
    baseline = cost.mean() if running_baseline is None else torch.as_tensor(running_baseline, dtype=cost.dtype)
    return cost - baseline


def policy_surrogate(token_advantages: torch.Tensor, token_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean_i sum_t A_it * (logp_it - stopgrad(logp_it)) / T_i``: value 0, REINFORCE gradient.

    Args:
        token_advantages: ``(R, T)`` advantage of each answer token (no gradient), or ``(R,)``
            one per answer (sequence-level credit).
        token_logp: ``(R, T)`` log-probability of each answer token, with gradient.
        mask: ``(R, T)`` 1 on the answer's tokens (``T_i = mask.sum(1)``).
    """
    adv = token_advantages.detach().to(token_logp.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(1)
    mask = mask.to(token_logp.dtype)
    per_answer = (adv * (token_logp - token_logp.detach()) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return per_answer.mean()


def truncated_importance_weights(
    train_logp: torch.Tensor, sampler_logp: torch.Tensor, clip_max: float, temperature: float = 1.0
) -> torch.Tensor:
    """``min(p_train / p_sampler, clip_max)`` per token, ``(R, T)``, no gradient: the weight
    that turns a policy gradient on samples drawn from a slightly different model (here: the
    merged sampling weights) into one for the trained model, truncated to bound its variance
    (TRL GRPO's vLLM correction, ``token_truncate`` mode). Positions past an answer's end
    are masked by the surrogate, whatever their weight.

    Both log-probabilities are at temperature 1 (the fused head's and the sampler's); samples
    drawn at ``temperature`` T come from ``p^(1/T) / Z``, whose ratio is
    ``exp((log p_train - log p_sampler) / T) * Z_sampler / Z_train``. The normalizers are not
    known from one token and are taken as equal (the two models differ by rounding)."""
    return torch.exp((train_logp.detach().float() - sampler_logp.float()) / temperature).clamp(max=clip_max)


def answer_token_logprobs(row_log_probs: torch.Tensor, prompt_width: int, answer_length: int) -> torch.Tensor:
    """The answer tokens' log-probabilities ``(R, T)`` out of a fused LM head's per-position
    output ``(R, W - 1)`` for ``[prompt (P columns)][answer (T)]`` rows: the head scores
    position ``j`` against the label at ``j + 1``, so answer token ``t`` is column ``P - 1 + t``."""
    return row_log_probs[:, prompt_width - 1 : prompt_width - 1 + answer_length]


@dataclass
class RunningBaseline:
    """Exponential moving average of the batch-mean cost: the baseline when K = 1.

    Attributes:
        momentum: weight of the old value in each update, in [0, 1).
        value: the current baseline, None before the first update.
    """

    momentum: float = 0.9
    value: float | None = None

    def update(self, cost: torch.Tensor) -> None:
        batch_mean = float(cost.mean())
        self.value = batch_mean if self.value is None else self.momentum * self.value + (1 - self.momentum) * batch_mean

    def state_dict(self) -> dict:
        return {"momentum": self.momentum, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.momentum, self.value = float(state["momentum"]), state["value"]
