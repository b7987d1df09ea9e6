"""Predict boxes with a trained model: see :mod:`trl_ground.cli.predict_bbox`.

    python scripts/predict_bbox.py --model runs/qlora/final_merged --test-json data/test.json --img-root data --out outputs.json
    python scripts/predict_bbox.py --model BASE --adapter runs/qlora/final --root images/ --class ship --out outputs.json
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl_ground.cli.predict_bbox import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
