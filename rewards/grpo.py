"""Reward functions for TRL's ``GRPOTrainer``, built on the same terms as the hybrid trainer.

TRL's contract: ``fn(completions, **kwargs) -> list[float | None]``, called with the
completions of a batch and every other dataset column as a keyword. These functions read
the column ``gt_boxes`` (per example, a list of ``[x1, y1, x2, y2]`` in [0, 1]) and, for
label-aware matching, ``class``. Completions may be plain strings or conversational
(``[{"role": "assistant", "content": ...}]``). Unknown keywords are ignored. An example
without ``gt_boxes`` scores ``None`` (TRL skips it for that function).

Every reward is an instance of :class:`GroundingReward` (picklable, with a stable
``__name__`` that TRL uses as the metric name). The module-level instances use the
trainer's defaults; :func:`get_grounding_reward` builds the weighted one.
"""

from __future__ import annotations

from .matching import MATCH_METHODS
from .parsing import COORD_SPACES, parse_raw
from .scoring import score_answers
from .terms import GroundingTerms

__all__ = [
    "GroundingReward",
    "REWARD_KINDS",
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


def _score(kind: str, terms: GroundingTerms, weights: tuple[float, float, float]) -> float:
    if kind == "grounding":
        return -terms.cost(*weights)
    if kind == "iou":
        return terms.mean_iou
    if kind == "fp":
        return -terms.fp
    if kind == "fn":
        return -terms.fn
    if kind == "f1":
        return terms.f1
    raise AssertionError(kind)


REWARD_KINDS = ("grounding", "iou", "fp", "fn", "f1", "format")


class GroundingReward:
    """A TRL reward function (see the module docstring).

    Args:
        kind: one of :data:`REWARD_KINDS`: ``grounding`` (``-(a*iou_loss + b*fp + c*fn)``),
            ``iou`` (mean IoU of matched pairs, 0 when none, 1 when both sides are empty), ``fp`` (``-fp``), ``fn``
            (``-fn``), ``f1``, ``format`` (1.0 when the answer is valid grounding JSON).
        weights: ``(iou_weight, fp_weight, fn_weight)`` for ``grounding``.
        iou_threshold, method: matching settings (:func:`rewards.grounding_terms`).
        coord_space: coordinate space of the answers (:func:`rewards.parse_boxes`).
        label_aware: a predicted label differing from the example's ``class`` cannot match.
        name: the ``__name__`` (defaults to ``{kind}_reward``).
    """

    def __init__(
        self,
        kind: str,
        weights: tuple[float, float, float] = (1.0, 0.5, 1.0),
        iou_threshold: float = 0.5,
        method: str = "hungarian",
        coord_space: str = "qwen",
        label_aware: bool = False,
        name: str | None = None,
    ):
        if kind not in REWARD_KINDS:
            raise ValueError(f"kind must be one of {REWARD_KINDS}, got {kind!r}")
        if len(weights) != 3 or any(not isinstance(w, (int, float)) or w < 0 for w in weights):
            raise ValueError(f"weights must be three non-negative numbers, got {weights!r}")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
        if method not in MATCH_METHODS:
            raise ValueError(f"method must be one of {MATCH_METHODS}, got {method!r}")
        if coord_space not in COORD_SPACES or coord_space == "pixel":
            raise ValueError(f"coord_space must be 'qwen' or 'norm' for rewards, got {coord_space!r}")
        self.kind = kind
        self.weights = tuple(float(w) for w in weights)
        self.iou_threshold = float(iou_threshold)
        self.method = method
        self.coord_space = coord_space
        self.label_aware = bool(label_aware)
        self.__name__ = name or f"{kind}_reward"

    def __repr__(self) -> str:
        return f"GroundingReward({self.__name__!r}, kind={self.kind!r}, weights={self.weights})"

    def __call__(self, completions, gt_boxes=None, **kwargs) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        if self.kind == "format":
            return [1.0 if parse_raw(t)[2] else 0.0 for t in texts]
        if gt_boxes is None:
            return [None] * len(texts)
        if len(gt_boxes) != len(texts):
            raise ValueError(f"{self.__name__}: {len(texts)} completions but {len(gt_boxes)} gt_boxes")
        known = [i for i, gt in enumerate(gt_boxes) if gt is not None]
        classes = kwargs.get("class") if self.label_aware else None
        if classes is not None and len(classes) != len(texts):
            raise ValueError(f"{self.__name__}: {len(texts)} completions but {len(classes)} values of 'class'")
        scored = score_answers(
            [texts[i] for i in known],
            [gt_boxes[i] for i in known],
            iou_threshold=self.iou_threshold,
            method=self.method,
            coord_space=self.coord_space,
            query_labels=[classes[i] for i in known] if classes is not None else None,
        )
        out: list[float | None] = [None] * len(texts)
        for i, s in zip(known, scored):
            out[i] = float(_score(self.kind, s.terms, self.weights))
        return out


def get_grounding_reward(
    iou_weight: float = 1.0,
    fp_weight: float = 0.5,
    fn_weight: float = 1.0,
    iou_threshold: float = 0.5,
    method: str = "hungarian",
    coord_space: str = "qwen",
    label_aware: bool = False,
) -> GroundingReward:
    """The weighted reward ``-(iou_weight*iou_loss + fp_weight*fp + fn_weight*fn)``: the
    negative of the hybrid trainer's per-sample cost with the same weights."""
    return GroundingReward(
        "grounding",
        (iou_weight, fp_weight, fn_weight),
        iou_threshold=iou_threshold,
        method=method,
        coord_space=coord_space,
        label_aware=label_aware,
    )


def get_reward(kind: str, **kwargs) -> GroundingReward:
    """Any reward of :data:`REWARD_KINDS` by name, with the settings of :class:`GroundingReward`."""
    return GroundingReward(kind, **kwargs)


iou_reward = GroundingReward("iou")
fp_reward = GroundingReward("fp")
fn_reward = GroundingReward("fn")
f1_reward = GroundingReward("f1")
format_reward = GroundingReward("format")
