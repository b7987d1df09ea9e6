"""Reward functions for TRL's ``GRPOTrainer``, built on the same scoring as the hybrid trainer.

TRL's contract: ``fn(completions, **kwargs) -> list[float | None]``, called with the
completions of a batch and every other dataset column as a keyword. These functions read
the column ``gt_boxes`` (per example, a list of ``[x1, y1, x2, y2]`` in [0, 1]) and, for
label-aware matching, ``class``. Completions may be plain strings or conversational
(``[{"role": "assistant", "content": ...}]``). Unknown keywords are ignored. An example
without ``gt_boxes`` scores ``None`` (TRL skips it for that function).

Every reward is a :class:`GroundingReward` (a callable object rather than a closure, so it
pickles) with a stable ``__name__`` that TRL uses as the metric name. :data:`REWARDS` is the
one registry of reward names; :func:`get_reward` builds one with given
:class:`~rewards.settings.ScoringSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .parsing import COORD_SPACES, parse_raw
from .scoring import ScoredAnswer
from .settings import ScoringSettings

__all__ = [
    "REWARDS",
    "GroundingReward",
    "completion_text",
    "f1_reward",
    "fn_reward",
    "format_reward",
    "fp_reward",
    "get_grounding_reward",
    "get_reward",
    "iou_reward",
]


def completion_text(completion) -> str:
    """The answer text of a plain-string or conversational completion ('' if none)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                content = message.get("content", "")
                if isinstance(content, str):
                    return content
                if isinstance(content, (list, tuple)):
                    return "".join(
                        part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
                    )
    return ""


def _grounding(scored: ScoredAnswer, settings: ScoringSettings) -> float:
    return -settings.answer_cost(scored)


def _iou(scored: ScoredAnswer, settings: ScoringSettings) -> float:
    return scored.terms.mean_iou


def _fp(scored: ScoredAnswer, settings: ScoringSettings) -> float:
    return -scored.terms.fp


def _fn(scored: ScoredAnswer, settings: ScoringSettings) -> float:
    return -scored.terms.fn


def _f1(scored: ScoredAnswer, settings: ScoringSettings) -> float:
    return scored.terms.f1


@dataclass(frozen=True)
class RewardSpec:
    """One entry of :data:`REWARDS`: what the reward is (for users) and how it is computed
    from a scored answer (``None``: from the parsed text alone, the format reward)."""

    description: str
    value: Callable[[ScoredAnswer, ScoringSettings], float] | None


REWARDS: dict[str, RewardSpec] = {
    "grounding": RewardSpec("minus the hybrid loss's per-answer cost (ScoringSettings.answer_cost)", _grounding),
    "iou": RewardSpec("mean IoU of the matched boxes (0 when none; 1 when both sides are empty)", _iou),
    "fp": RewardSpec("minus the number of false positives", _fp),
    "fn": RewardSpec("minus the number of false negatives", _fn),
    "f1": RewardSpec("F1 of the matching at iou_threshold", _f1),
    "format": RewardSpec("1 when the answer is valid grounding JSON, else 0", None),
}


class GroundingReward:
    """A TRL reward function (see the module docstring): :data:`REWARDS` entry ``kind``
    computed with ``settings``.

    Args:
        kind: a name of :data:`REWARDS`.
        settings: how answers are matched and what the grounding cost is.
        coord_space: coordinate space of the answers, ``"qwen"`` (0..1000) or ``"norm"``.
    """

    def __init__(self, kind: str, settings: ScoringSettings | None = None, coord_space: str = "qwen"):
        if kind not in REWARDS:
            raise ValueError(f"unknown reward {kind!r}; valid names: {sorted(REWARDS)}")
        if coord_space not in COORD_SPACES or coord_space == "pixel":
            raise ValueError(f"coord_space must be 'qwen' or 'norm' for rewards, got {coord_space!r}")
        self.kind = kind
        self.settings = settings if settings is not None else ScoringSettings()
        self.coord_space = coord_space
        self.__name__ = f"{kind}_reward"

    def __repr__(self) -> str:
        return f"GroundingReward({self.kind!r}, {self.settings})"

    def __call__(self, completions, gt_boxes=None, **kwargs) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        value = REWARDS[self.kind].value
        if value is None:
            return [1.0 if parse_raw(t)[2] else 0.0 for t in texts]
        if gt_boxes is None:
            return [None] * len(texts)
        if len(gt_boxes) != len(texts):
            raise ValueError(f"{self.__name__}: {len(texts)} completions but {len(gt_boxes)} gt_boxes")
        known = [i for i, gt in enumerate(gt_boxes) if gt is not None]
        classes = kwargs.get("class") if self.settings.label_aware_matching else None
        if classes is not None and len(classes) != len(texts):
            raise ValueError(f"{self.__name__}: {len(texts)} completions but {len(classes)} values of 'class'")
        scored = self.settings.score(
            [texts[i] for i in known],
            [gt_boxes[i] for i in known],
            query_labels=[classes[i] for i in known] if classes is not None else None,
            coord_space=self.coord_space,
        )
        out: list[float | None] = [None] * len(texts)
        for i, s in zip(known, scored):
            out[i] = float(value(s, self.settings))
        return out


def get_reward(kind: str, settings: ScoringSettings | None = None, coord_space: str = "qwen") -> GroundingReward:
    """The reward ``kind`` (a name of :data:`REWARDS`) with ``settings`` (default: the defaults)."""
    return GroundingReward(kind, settings, coord_space)


def get_grounding_reward(settings: ScoringSettings | None = None, coord_space: str = "qwen") -> GroundingReward:
    """Minus the hybrid trainer's per-answer cost with the same ``settings``: SFT with the
    grounding loss and GRPO with this reward optimize the same quantity."""
    return GroundingReward("grounding", settings, coord_space)


iou_reward = GroundingReward("iou")
fp_reward = GroundingReward("fp")
fn_reward = GroundingReward("fn")
f1_reward = GroundingReward("f1")
format_reward = GroundingReward("format")
