"""``trl-ground-sft`` from a checkout: the command lives in ``trl_ground/cli/sft_ground.py``."""

import sys

from trl_ground.cli.sft_ground import main

if __name__ == "__main__":
    sys.exit(main())
