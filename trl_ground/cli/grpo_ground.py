"""GRPO on Qwen3-VL with the hybrid trainer's grounding scores as rewards (TRL's GRPOTrainer).

    trl-ground-grpo --config configs/grpo.yaml [--adapter runs/qlora/final] [--any-key value ...]

Same data, model flags and scoring settings as ``trl-ground-sft``; rewards by name
(``--rewards grounding format``) with ``--reward-weights``.
"""

from __future__ import annotations

import sys

from .common import run_reporting_errors


def main(argv=None) -> int:
    from trl_ground.config import GroundingGRPOConfig, parse_args

    try:
        data_args, model_args, scoring, config = parse_args(argv, config_class=GroundingGRPOConfig)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from trl_ground.grpo import run_grpo

    return run_reporting_errors(run_grpo, data_args, model_args, scoring, config)


if __name__ == "__main__":
    sys.exit(main())
