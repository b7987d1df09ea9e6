"""``trl-ground-convert-data`` from a checkout: the command lives in ``trl_ground/cli/convert_data.py``."""

import sys

from trl_ground.cli.convert_data import main

if __name__ == "__main__":
    sys.exit(main())
