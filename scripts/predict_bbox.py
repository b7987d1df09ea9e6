"""``trl-ground-predict`` from a checkout: the command lives in ``trl_ground/cli/predict_bbox.py``."""

import sys

from trl_ground.cli.predict_bbox import main

if __name__ == "__main__":
    sys.exit(main())
