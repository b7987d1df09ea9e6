"""The seed's entry point, kept working: ``--root --model --out`` (and every option of
``scripts/predict_bbox.py``, see :mod:`trl_ground.cli.predict_bbox`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl_ground.cli.predict_bbox import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
