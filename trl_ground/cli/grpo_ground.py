"""GRPO on Qwen3-VL (TRL's GRPOTrainer) rewarded by the hybrid trainer's grounding scores:
the same data, model options and scoring settings as trl-ground-sft; rewards chosen by name
(--rewards grounding format) and weighted (--reward-weights 1.0 0.5).

examples:
  trl-ground-grpo --config configs/grpo_demo.yaml     # after the SFT demo: starts from its model
  trl-ground-grpo --config configs/grpo.yaml --train-json data/train.json --img-root data/ --adapter runs/qlora/final
"""

from __future__ import annotations

import sys

from .common import command
from .trainer_command import run_trainer_command


@command
def main(argv: list[str]) -> int:
    return run_trainer_command(argv, "grpo", __doc__)


if __name__ == "__main__":
    sys.exit(main())
