"""``trl-ground-bench-learning`` from a checkout: the benchmark lives in ``trl_ground/benchmarks/learning.py``."""

import sys

from trl_ground.benchmarks.learning import main

if __name__ == "__main__":
    sys.exit(main())
