"""The reference script's entry point, kept working: ``--root --model --out`` (and every
option of ``trl-ground-predict``, see :mod:`trl_ground.cli.predict_bbox`)."""

import sys

from trl_ground.cli.predict_bbox import main

if __name__ == "__main__":
    sys.exit(main())
