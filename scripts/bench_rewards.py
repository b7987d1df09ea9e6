"""``trl-ground-bench-rewards`` from a checkout: the benchmark lives in ``trl_ground/benchmarks/rewards.py``."""

import sys

from trl_ground.benchmarks.rewards import main

if __name__ == "__main__":
    sys.exit(main())
