"""Write the synthetic grounding dataset (images + train.json / test.json, the reference script's format).

    trl-ground-make-data --out data/synthetic --n 200 --seed 0
"""

from __future__ import annotations

import argparse
import sys



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--n", type=int, default=200, help="number of images (train + test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--size", type=int, default=128, help="image side in pixels")
    ap.add_argument("--max-objects", type=int, default=8)
    args = ap.parse_args(argv)
    from trl_ground.synthetic import make_synthetic_dataset

    train, test, root = make_synthetic_dataset(args.out, args.n, args.seed, args.test_fraction, args.size, args.max_objects)
    print(f"wrote {train}, {test} (images under {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
