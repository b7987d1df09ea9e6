"""GRPO with the hybrid trainer's scores: TRL's ``GRPOTrainer`` and ``rewards.grpo``.

Rewards are chosen by name (``rewards.grpo.REWARDS``) with ``reward_weights``; the default
is the grounding reward (minus the hybrid loss's per-answer cost, with the same
:class:`rewards.ScoringSettings`) plus the format reward.
"""

from __future__ import annotations

from trl import GRPOTrainer

from rewards import ScoringSettings
from rewards.grpo import GroundingReward, get_reward

from ..config.training import resolve_learning_rate
from .model_card import ModelCardMixin

__all__ = ["GroundingGRPOTrainer", "build_grpo_trainer", "build_rewards", "run_grpo"]


class GroundingGRPOTrainer(ModelCardMixin, GRPOTrainer):
    """TRL's ``GRPOTrainer`` writing the project's model cards (:mod:`trl_ground.train.model_card`);
    an unset ``learning_rate`` becomes 2e-4 for a LoRA model, 2e-5 for another."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        resolve_learning_rate(self.args, self.model)


def build_rewards(names: list[str], scoring: ScoringSettings) -> list[GroundingReward]:
    """The reward functions ``names`` (from ``rewards.grpo.REWARDS``) with ``scoring``."""
    return [get_reward(name, scoring) for name in names]


def build_grpo_trainer(data_args, model_args, scoring, config) -> GroundingGRPOTrainer:
    """Datasets (prompts with ``gt_boxes`` / ``class``, no target answers), model (optionally
    from an SFT adapter: ``model_args.adapter``), processor and TRL's ``GRPOTrainer``."""
    from .job import load_data_and_model

    train_ds, _, processor, model = load_data_and_model(data_args, model_args, config, with_completion=False)
    rewards = build_rewards(config.rewards, scoring)
    return GroundingGRPOTrainer(model=model, reward_funcs=rewards, args=config, train_dataset=train_ds, processing_class=processor)


def run_grpo(data_args, model_args, scoring, config, command_line: list[str] | None = None) -> GRPOTrainer:
    """Train with GRPO, then write ``final/`` and (with LoRA) ``final_merged/``."""
    from .job import run_training

    return run_training(data_args, model_args, scoring, config, build_grpo_trainer, command_line)
