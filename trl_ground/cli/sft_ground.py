"""Fine-tune Qwen3-VL for grounding with the hybrid loss (LM + grounding terms on sampled answers).

    trl-ground-sft --config configs/qlora.yaml [--any-key value ...]

Every config key is also a flag (``--train-json``, ``--img-root``, ``--lora-r``,
``--iou-loss-weight``, ``--no-use-lora`` ...); flags override the YAML file.
"""

from __future__ import annotations

import sys

from .common import run_reporting_errors


def main(argv=None) -> int:
    from trl_ground.config import parse_args

    try:
        data_args, model_args, scoring, config = parse_args(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from trl_ground.train import run_sft

    return run_reporting_errors(run_sft, data_args, model_args, scoring, config)


if __name__ == "__main__":
    sys.exit(main())
