"""How an answer is scored: one value object shared by the trainer, the GRPO rewards and the
signal report.

:class:`ScoringSettings` owns every default and every check of the scoring settings. Its
field names are the YAML keys and CLI flags (``iou_loss_weight`` is ``--iou-loss-weight``
and the weight of ``iou_loss`` in :meth:`ScoringSettings.cost`): one name per setting from
the config file to the maths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .dense import DENSE_NORMS
from .matching import MATCH_METHODS, check_matching
from .scoring import ScoredAnswer, score_answers
from .terms import GroundingTerms

__all__ = ["COSTS", "ScoringSettings"]

COSTS = ("dense", "counts")


@dataclass(frozen=True)
class ScoringSettings:
    """Settings of the per-answer grounding cost (the hybrid loss) and of the GRPO rewards.

    Parameters:
        cost (`str`, defaults to `"dense"`):
            Which per-answer cost the hybrid loss minimizes, one of :data:`COSTS`.
            ``"dense"``: ``1 - score`` with the bounded dense score of :mod:`rewards.dense`
            (in [0, 1]; ``[]`` costs 1 on a prompt with boxes and 0 on one without).
            ``"counts"``: ``iou_loss_weight * iou_loss + fp_loss_weight * fp + fn_loss_weight * fn``
            after matching at ``iou_threshold`` (the reference script's terms; ``[]`` is
            cheaper than any wrong box).
        giou_weight (`float`, defaults to `0.5`):
            Dense cost: weight of the GIoU shaping in the pair quality
            ``(1 - giou_weight) * IoU + giou_weight * (1 + GIoU) / 2``.
        duplicate_iou (`float`, defaults to `0.7`):
            Dense cost: a box whose IoU with an earlier box of the same answer reaches this
            is a duplicate (quality 0, still counted).
        dense_norm (`str`, defaults to `"f1"`):
            Dense cost: ``"f1"`` (``2 * matched quality / (N + M)``) or ``"max"`` (``/ max(N, M)``).
        iou_loss_weight (`float`, defaults to `1.0`):
            Weight of ``iou_loss = 1 - mean IoU of the matched pairs`` in the counts cost.
        fp_loss_weight (`float`, defaults to `0.5`):
            Weight of the false positives (unmatched predictions) in the counts cost.
        fn_loss_weight (`float`, defaults to `1.0`):
            Weight of the false negatives (unmatched ground truth) in the counts cost.
        iou_threshold (`float`, defaults to `0.5`):
            A predicted box matches a ground-truth box at IoU >= this (the counts, precision,
            recall and F1 that are logged, whatever the cost).
        match_method (`str`, defaults to `"hungarian"`):
            ``"hungarian"`` (scipy's assignment: the most pairs, then the largest total IoU) or
            ``"greedy"`` (highest IoU first, the reference script's rule).
        label_aware_matching (`bool`, defaults to `False`):
            A predicted box labelled with another class than the queried one cannot match.
    """

    cost: str = field(default="dense", metadata={"help": f"Per-answer cost of the hybrid loss, one of {COSTS} (README: 'Which grounding cost')."})
    giou_weight: float = field(default=0.5, metadata={"help": "Dense cost: weight of GIoU in the pair quality (1-w)*IoU + w*(1+GIoU)/2."})
    duplicate_iou: float = field(default=0.7, metadata={"help": "Dense cost: IoU with an earlier box from which a box is a duplicate."})
    dense_norm: str = field(default="f1", metadata={"help": f"Dense cost normalization, one of {DENSE_NORMS}."})
    iou_loss_weight: float = field(default=1.0, metadata={"help": "Weight of iou_loss (1 - mean IoU of matched pairs) in the counts cost."})
    fp_loss_weight: float = field(default=0.5, metadata={"help": "Weight of false positives in the counts cost."})
    fn_loss_weight: float = field(default=1.0, metadata={"help": "Weight of false negatives in the counts cost."})
    iou_threshold: float = field(default=0.5, metadata={"help": "IoU at which a predicted box matches (counts, F1)."})
    match_method: str = field(default="hungarian", metadata={"help": f"One of {MATCH_METHODS}."})
    label_aware_matching: bool = field(default=False, metadata={"help": "A box labelled with another class cannot match."})

    def __post_init__(self):
        if self.cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {self.cost!r}")
        for name in ("iou_loss_weight", "fp_loss_weight", "fn_loss_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        check_matching(self.iou_threshold, self.match_method)
        if not 0.0 <= self.giou_weight <= 1.0:
            raise ValueError(f"giou_weight must lie in [0, 1], got {self.giou_weight}")
        if self.dense_norm not in DENSE_NORMS:
            raise ValueError(f"dense_norm must be one of {DENSE_NORMS}, got {self.dense_norm!r}")
        if not 0.0 < self.duplicate_iou <= 1.0:
            raise ValueError(f"duplicate_iou must lie in (0, 1], got {self.duplicate_iou}")

    def score(self, texts, gt_boxes, query_labels=None, coord_space: str = "qwen") -> list[ScoredAnswer]:
        """Parse and score a batch of answers with these settings.

        Args:
            texts: ``B`` answers (anything that is not a string parses to no boxes).
            gt_boxes: ``B`` ground truths, each ``(M_i, 4)`` xyxy in [0, 1].
            query_labels: ``B`` queried classes (used only with ``label_aware_matching``).
            coord_space: ``"qwen"`` (0..1000) or ``"norm"`` (0..1) answers.
        Returns:
            ``B`` :class:`~rewards.scoring.ScoredAnswer`, in order.
        """
        labels = query_labels if self.label_aware_matching else None
        return score_answers(
            texts,
            gt_boxes,
            self.iou_threshold,
            self.match_method,
            coord_space,
            labels,
            dense=self.cost == "dense",
            giou_weight=self.giou_weight,
            duplicate_iou=self.duplicate_iou,
            dense_norm=self.dense_norm,
        )

    def answer_cost(self, scored: ScoredAnswer) -> float:
        """The per-answer cost the hybrid loss minimizes (and GRPO's grounding reward negates):
        ``1 - dense score`` or the counts cost, per :attr:`cost`."""
        if self.cost == "dense":
            if scored.dense is None:
                raise ValueError("the dense cost needs answers scored with their dense score (ScoringSettings.score does that)")
            return 1.0 - scored.dense.score
        return self.counts_cost(scored.terms)

    def counts_cost(self, terms: GroundingTerms) -> float:
        """``iou_loss_weight * iou_loss + fp_loss_weight * fp + fn_loss_weight * fn``."""
        return self.iou_loss_weight * terms.iou_loss + self.fp_loss_weight * terms.fp + self.fn_loss_weight * terms.fn

    def as_dict(self) -> dict:
        return asdict(self)
