"""``trl-ground-bench-step`` from a checkout: the benchmark lives in ``trl_ground/benchmarks/step.py``."""

import sys

from trl_ground.benchmarks.step import main

if __name__ == "__main__":
    sys.exit(main())
