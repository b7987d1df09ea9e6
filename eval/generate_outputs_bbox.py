"""The reference script's entry point, kept working: ``--root --model --out`` (and every option of
``scripts/predict_bbox.py``)."""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    script = Path(__file__).resolve().parents[1] / "scripts" / "predict_bbox.py"
    sys.argv[0] = str(script)
    runpy.run_path(str(script), run_name="__main__")
