"""GRPO with the hybrid trainer's scores: TRL's ``GRPOTrainer`` and ``rewards.grpo``.

Rewards are chosen by name (:data:`REWARD_REGISTRY`) with ``reward_weights``; the default
is the weighted grounding reward, ``-(a*iou_loss + b*fp + c*fn)`` with the same weights and
matching as the hybrid SFT loss, plus the format reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, GRPOTrainer

from rewards.grpo import GroundingReward, get_grounding_reward, get_reward

from .config import GroundingScoreArguments, SeedTrainingDefaults

__all__ = ["GroundingGRPOConfig", "REWARD_REGISTRY", "build_grpo_trainer", "build_rewards", "run_grpo"]

REWARD_REGISTRY = {
    "grounding": "-(iou_loss_weight*iou_loss + fp_loss_weight*fp + fn_loss_weight*fn): the hybrid loss's cost, negated",
    "iou": "mean IoU of the matched boxes",
    "fp": "minus the number of false positives",
    "fn": "minus the number of false negatives",
    "f1": "F1 of the matching",
    "format": "1 when the answer is valid grounding JSON",
}


@dataclass
class GroundingGRPOConfig(GroundingScoreArguments, SeedTrainingDefaults, GRPOConfig):
    """``trl.GRPOConfig`` with the seed's defaults, the scoring settings and reward names."""

    output_dir: str = field(default="runs/grpo_ground", metadata={"help": "Where checkpoints and final models go."})
    rewards: list[str] = field(
        default_factory=lambda: ["grounding", "format"],
        metadata={"help": f"Reward functions by name, among {sorted(REWARD_REGISTRY)} (weights: reward_weights)."},
    )
    num_generations: int | None = field(default=4, metadata={"help": "Answers sampled per prompt (the group)."})
    max_completion_length: int | None = field(
        default=256, metadata={"help": "Token limit of an answer: ~25 tokens per box; truncated answers score their complete boxes."}
    )

    def __post_init__(self):
        unknown = [name for name in self.rewards if name not in REWARD_REGISTRY]
        if unknown:
            raise ValueError(f"unknown reward(s) {unknown}; valid names: {sorted(REWARD_REGISTRY)}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} entries for {len(self.rewards)} rewards")
        self._check_scores()
        self._check_seed_defaults()
        super().__post_init__()


def build_rewards(config) -> list[GroundingReward]:
    """The reward functions named by ``config.rewards``, with its scoring settings."""
    common = {"iou_threshold": config.iou_threshold, "method": config.match_method, "label_aware": config.label_aware_matching}
    out = []
    for name in config.rewards:
        if name not in REWARD_REGISTRY:
            raise ValueError(f"unknown reward {name!r}; valid names: {sorted(REWARD_REGISTRY)}")
        if name == "grounding":
            out.append(get_grounding_reward(*config.score_weights, **common))
        else:
            out.append(get_reward(name, **common))
    return out


def build_grpo_trainer(data_args, model_args, config) -> GRPOTrainer:
    """Datasets (prompts with ``gt_boxes`` / ``class``, no target answers), model (optionally
    from an SFT adapter: ``model_args.adapter``), processor and TRL's ``GRPOTrainer``."""
    from .train import load_data_and_model

    train_ds, _, processor, model = load_data_and_model(data_args, model_args, config, with_completion=False)
    return GRPOTrainer(model=model, reward_funcs=build_rewards(config), args=config, train_dataset=train_ds, processing_class=processor)


def run_grpo(data_args, model_args, config) -> GRPOTrainer:
    """Train with GRPO, then write ``final/`` and (with LoRA) ``final_merged/``."""
    from .train import run_training

    return run_training(data_args, model_args, config, build_grpo_trainer)
