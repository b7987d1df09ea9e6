"""``trl-ground-check-signal`` from a checkout: the command lives in ``trl_ground/cli/check_reward_signal.py``."""

import sys

from trl_ground.cli.check_reward_signal import main

if __name__ == "__main__":
    sys.exit(main())
