"""``trl-ground-plot`` from a checkout: the command lives in ``trl_ground/cli/plot_training.py``."""

import sys

from trl_ground.cli.plot_training import main

if __name__ == "__main__":
    sys.exit(main())
