"""Fine-tune Qwen3-VL for grounding with the hybrid loss (LM + IoU/FP/FN on sampled answers).

    python scripts/sft_ground.py --config configs/qlora.yaml [--any-key value ...]

Every config key is also a flag (``--train-json``, ``--img-root``, ``--lora-r``,
``--iou-loss-weight``, ``--no-use-lora`` ...); flags override the YAML file.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from trl_ground.config import parse_sft_args

    try:
        data_args, model_args, config = parse_sft_args(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from trl_ground.train import run_sft

    run_sft(data_args, model_args, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
