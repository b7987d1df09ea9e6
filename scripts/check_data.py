"""Validate a grounding JSON exactly as training will, and summarize it: see
:mod:`trl_ground.cli.check_data`.

    python scripts/check_data.py --train-json data/train.json --img-root data/ [--tokenizer DIR] [--no-image-check]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl_ground.cli.check_data import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
