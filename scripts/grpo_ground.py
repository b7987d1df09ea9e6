"""GRPO on Qwen3-VL with the hybrid trainer's grounding scores as rewards (TRL's GRPOTrainer).

    python scripts/grpo_ground.py --config configs/grpo.yaml [--adapter runs/qlora/final] [--any-key value ...]

Same data, model flags and scoring settings as ``sft_ground.py``; rewards by name
(``--rewards grounding format``) with ``--reward-weights``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from trl_ground.config import parse_sft_args
    from trl_ground.grpo import GroundingGRPOConfig

    try:
        data_args, model_args, config = parse_sft_args(argv, config_class=GroundingGRPOConfig)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from trl_ground.grpo import run_grpo

    run_grpo(data_args, model_args, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
