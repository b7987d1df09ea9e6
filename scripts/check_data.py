"""``trl-ground-check-data`` from a checkout: the command lives in ``trl_ground/cli/check_data.py``."""

import sys

from trl_ground.cli.check_data import main

if __name__ == "__main__":
    sys.exit(main())
