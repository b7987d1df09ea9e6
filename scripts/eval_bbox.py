"""``trl-ground-eval`` from a checkout: the command lives in ``trl_ground/cli/eval_bbox.py``."""

import sys

from trl_ground.cli.eval_bbox import main

if __name__ == "__main__":
    sys.exit(main())
