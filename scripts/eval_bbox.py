"""Score predictions against ground truth: see :mod:`trl_ground.cli.eval_bbox`.

    python scripts/eval_bbox.py --pred outputs.json --gt data/test.json --out metrics.json [--img-root data] [--viz DIR]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl_ground.cli.eval_bbox import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
