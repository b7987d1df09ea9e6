"""Fine-tune Qwen3-VL to ground objects (answer with bounding boxes): SFT on the target
answers plus grounding terms (IoU, false positives, false negatives) measured on answers
sampled from the model, with a policy-gradient surrogate so that they have a gradient.

examples:
  trl-ground-sft --config configs/demo.yaml          # tiny offline model, synthetic data, CPU, ~1 min
  trl-ground-sft --config configs/qlora.yaml --train-json data/train.json --img-root data/
  trl-ground-sft --config configs/qlora.yaml --train-json data/train.json --img-root data/ --lora-r 32 --lr 1e-4
"""

from __future__ import annotations

import sys

from .common import command
from .trainer_command import run_trainer_command


@command
def main(argv: list[str]) -> int:
    return run_trainer_command(argv, "sft", __doc__)


if __name__ == "__main__":
    sys.exit(main())
