"""``trl-ground-bench-drafts`` from a checkout: the benchmark lives in ``trl_ground/benchmarks/drafts.py``."""

import sys

from trl_ground.benchmarks.drafts import main

if __name__ == "__main__":
    sys.exit(main())
