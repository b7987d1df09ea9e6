"""Convert COCO / YOLO / DOTA / Hugging Face data into the project's JSON (see ``trl_ground/cli/convert_data.py``).

    python scripts/convert_data.py --from yolo --images images/ --labels labels/ --classes classes.txt --out data/train.json --check
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl_ground.cli.convert_data import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
