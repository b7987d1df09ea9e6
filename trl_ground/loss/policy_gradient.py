"""The policy-gradient maths of the hybrid loss, as pure functions of tensors.

The grounding cost of a sampled answer is computed on its parsed text, so it has no
gradient of its own. The hybrid loss adds it together with a surrogate whose value is 0 and
whose gradient is REINFORCE with a baseline::

    A_i        = cost_i - baseline_i
    surrogate  = sum_i sum_t A_it * (logp_it - stopgrad(logp_it)) / Z

``logp_it`` is the log-probability of token ``t`` of answer ``i`` under the current model and
``A_it`` the advantage its token carries (``A_i`` for every token with sequence-level credit).
Minimizing it makes answers that cost more than their baseline less likely. The normalizer
``Z`` is TRL GRPO's ``loss_type`` (:data:`LOSS_TYPES`): ``"dr_grpo"``: ``R * max_new_tokens``,
a constant (Dr. GRPO); ``"dapo"``: the number of answer tokens of the micro-batch. Under both
every token weighs the same whatever the length of its answer. ``"grpo"`` divides each
answer by its own length ``T_i`` before the mean over answers, which gives the tokens of a
short answer such as ``[]`` several times (~8x against one box) the weight of a box
answer's (Dr. GRPO's length bias); kept for comparison. Answers left out of the policy term
(a group without spread, :func:`flat_groups`) count in no normalizer.

Baselines: the mean cost of the prompt's other K - 1 answers (K > 1), or, when K = 1, a
running mean kept separately for prompts with boxes and prompts without
(:class:`PromptTypeBaselines`): their costs differ systematically (``[]`` is free on one and
the worst answer on the other), so one mean over both would push every answer to a prompt
of the cheaper kind up and every other one down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = [
    "LOSS_TYPES",
    "PolicyLossSettings",
    "PromptTypeBaselines",
    "RunningBaseline",
    "advantages",
    "answer_token_logprobs",
    "flat_groups",
    "grounding_loss",
    "permute_answers",
    "policy_surrogate",
    "truncated_importance_weights",
]

LOSS_TYPES = ("dr_grpo", "dapo", "grpo")
FLAT_TOLERANCE = 1e-6


def advantages(cost: torch.Tensor, k: int, running_baseline: float | torch.Tensor | None) -> torch.Tensor:
    """``A_i = cost_i - baseline_i`` for ``cost (B*K,)`` grouped by prompt (K consecutive).

    K > 1: the baseline is the mean cost of the other samples of the same prompt.
    K = 1: ``running_baseline``, one value or ``(R,)`` one per answer
    (:meth:`PromptTypeBaselines.per_answer`); the batch mean when None.
    """
    if k > 1:
        groups = cost.view(-1, k)
        others = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
        return (groups - others).reshape(-1)
    baseline = cost.mean() if running_baseline is None else torch.as_tensor(running_baseline, dtype=cost.dtype, device=cost.device)
    return cost - baseline


def flat_groups(cost: torch.Tensor, k: int, tolerance: float = FLAT_TOLERANCE) -> torch.Tensor:
    """``(B,)`` bool: the prompts whose K answer costs are all equal (``max - min < tolerance``),
    from ``cost (B*K,)``: their answers teach nothing relative to each other. All False when K = 1."""
    groups = cost.view(-1, k)
    if k == 1:
        return torch.zeros(groups.shape[0], dtype=torch.bool, device=cost.device)
    return (groups.max(dim=1).values - groups.min(dim=1).values) < tolerance


def permute_answers(
    token_advantages: torch.Tensor, keep: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A benchmark control: the advantage rows ``(R,)`` or ``(R, T)`` and the ``(R,)`` keep mask
    moved together to a random permutation of the R answers (drawn from ``generator``, on the
    CPU), so that the surrogate's gradient has the same magnitude and noise as the real one
    but no relation to the reward."""
    perm = torch.randperm(keep.shape[0], generator=generator).to(keep.device)
    return token_advantages[perm.to(token_advantages.device)], keep[perm]


def policy_surrogate(
    token_advantages: torch.Tensor,
    token_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str,
    max_new_tokens: int | None = None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum_i sum_t A_it * (logp_it - stopgrad(logp_it)) / Z``: value 0, REINFORCE gradient.

    Args:
        token_advantages: ``(R, T)`` advantage of each answer token (no gradient), or ``(R,)``
            one per answer (sequence-level credit).
        token_logp: ``(R, T)`` log-probability of each answer token, with gradient.
        mask: ``(R, T)`` 1 on the answer's tokens (``T_i = mask.sum(1)``).
        loss_type: the normalizer ``Z`` (module docstring): ``"dr_grpo"``: ``R' * max_new_tokens``;
            ``"dapo"``: the answer tokens of the kept answers; ``"grpo"``: ``T_i`` per answer,
            then the mean over the ``R'`` kept answers.
        max_new_tokens: the answers' token limit (``"dr_grpo"`` only).
        keep: optional ``(R,)`` bool, the answers that take part (``R'`` of them); the others
            contribute nothing and count in no normalizer. Default: all.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if loss_type == "dr_grpo" and not max_new_tokens:
        raise ValueError("loss_type 'dr_grpo' needs max_new_tokens")
    adv = token_advantages.detach().to(token_logp.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(1)
    mask = mask.to(token_logp.dtype)
    if keep is not None:
        mask = mask * keep.to(device=mask.device, dtype=mask.dtype).unsqueeze(1)
    per_token = adv * (token_logp - token_logp.detach()) * mask
    answers = mask.shape[0] if keep is None else int(keep.sum())
    if loss_type == "grpo":
        return (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum() / max(answers, 1)
    if loss_type == "dapo":
        return per_token.sum() / mask.sum().clamp(min=1)
    return per_token.sum() / max(answers * max_new_tokens, 1)


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


@dataclass
class PromptTypeBaselines:
    """The K = 1 baselines: a running mean of the cost of the answers to prompts with boxes,
    and one of those to prompts without.

    Attributes:
        with_boxes: the baseline of answers to prompts with ground-truth boxes.
        without_boxes: the baseline of answers to prompts without.
    """

    with_boxes: RunningBaseline = field(default_factory=RunningBaseline)
    without_boxes: RunningBaseline = field(default_factory=RunningBaseline)

    @classmethod
    def with_momentum(cls, momentum: float) -> PromptTypeBaselines:
        return cls(RunningBaseline(momentum), RunningBaseline(momentum))

    def per_answer(self, cost: torch.Tensor, has_boxes: torch.Tensor) -> torch.Tensor:
        """``(R,)`` each answer's baseline from ``cost (R,)`` and ``has_boxes (R,)`` bool (its
        prompt's type): its type's running mean, or the batch's mean cost over that type
        before there is one."""
        out = torch.empty_like(cost)
        for kind, baseline in ((True, self.with_boxes), (False, self.without_boxes)):
            rows = has_boxes == kind
            if rows.any():
                out[rows] = cost[rows].mean() if baseline.value is None else baseline.value
        return out

    def state_dict(self) -> dict:
        return {"baseline_with_boxes": self.with_boxes.state_dict(), "baseline_without_boxes": self.without_boxes.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """From :meth:`state_dict`, or from an older checkpoint's single ``baseline`` (then
        both types start from it; its ``box_baseline`` has no use any more)."""
        if "baseline_with_boxes" in state:
            self.with_boxes.load_state_dict(state["baseline_with_boxes"])
            self.without_boxes.load_state_dict(state["baseline_without_boxes"])
        else:
            self.with_boxes.load_state_dict(state["baseline"])
            self.without_boxes.load_state_dict(state["baseline"])


@dataclass
class PolicyLossSettings:
    """The grounding loss's options (the trainer's options of the same names).

    Attributes:
        policy_gradient: add the REINFORCE surrogate (``grounding_gradient="policy_gradient"``);
            False adds the cost as a constant (the reference script's literal behaviour).
        weight: ``policy_loss_weight``, lambda of the surrogate.
        loss_type: the surrogate's normalizer (:data:`LOSS_TYPES`).
        max_new_tokens: the answers' token limit (the ``"dr_grpo"`` normalizer).
        importance_clip_max: cap of the per-token importance weight of samples drawn with
            merged sampling weights.
        temperature: the sampling temperature (for those weights).
    """

    policy_gradient: bool = True
    weight: float = 1.0
    loss_type: str = "dr_grpo"
    max_new_tokens: int | None = None
    importance_clip_max: float = 3.0
    temperature: float = 1.0


def grounding_loss(rollout, answer_logp: torch.Tensor | None, settings: PolicyLossSettings) -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss, metrics)``: the grounding term of the hybrid loss for a collected rollout.

    ``loss = mean(cost) + weight * surrogate`` (the surrogate's value is 0, so the value is the
    mean cost; without the policy gradient the loss is the cost alone, a constant). Samples
    drawn with merged sampling weights (``samples.sampler_logprobs`` set) have their token
    advantages weighted by :func:`truncated_importance_weights`; ``metrics`` then say how far
    the two models are apart on the sampled tokens.

    Args:
        rollout: a :class:`~trl_ground.loss.rollout.Rollout` whose advantages are assigned
            (:func:`~trl_ground.loss.rollout.assign_advantages`) when ``settings.policy_gradient``.
        answer_logp: ``(R, T)`` per-token log-probabilities of the sampled answers, with
            gradient; unused without the policy gradient.
        settings: :class:`PolicyLossSettings`.
    """
    device = rollout.samples.completion_ids.device
    loss = rollout.cost.mean().to(device)
    metrics: dict[str, float] = {}
    if not settings.policy_gradient or settings.weight == 0:
        return loss, metrics
    samples, adv = rollout.samples, rollout.advantages
    if samples.sampler_logprobs is not None:
        weights = truncated_importance_weights(answer_logp, samples.sampler_logprobs, settings.importance_clip_max, settings.temperature)
        adv = (adv if adv.dim() == 2 else adv.unsqueeze(1)) * weights
        mask = samples.completion_mask.bool()
        gap = (answer_logp.detach().float() - samples.sampler_logprobs.float())[mask]  # empty: NaN means, not logged
        metrics = {
            "sampling/logp_gap_abs_mean": float(gap.abs().mean()),
            "sampling/importance_weight_mean": float(weights[mask].mean()),
            "sampling/importance_weight_clipped": float((weights[mask] >= settings.importance_clip_max).float().mean()),
        }
    surrogate = policy_surrogate(
        adv, answer_logp, samples.completion_mask, loss_type=settings.loss_type, max_new_tokens=settings.max_new_tokens, keep=rollout.keep
    )
    return loss + settings.weight * surrogate, metrics
