"""Write the synthetic grounding dataset (images + train.json / test.json, the reference script's format):
ships, airplanes, vehicles and storage tanks drawn as distinct shapes on textured backgrounds.

    trl-ground-make-data --out data/synthetic --n 200 --seed 0
"""

from __future__ import annotations

import sys

from .common import ArgumentParser, command


@command
def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="trl-ground-make-data", description=__doc__)
    ap.add_argument("--out", required=True, help="output directory (train.json, test.json, images/)")
    ap.add_argument("--n", type=int, default=200, help="number of images (train + test)")
    ap.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same dataset")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="fraction of the images written to test.json")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels")
    ap.add_argument("--max-objects", type=int, default=8, help="at most this many objects per image (0 to max)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.max_objects < 0 or not 0.0 <= args.test_fraction < 1.0:
        raise ValueError("need --n >= 1, --max-objects >= 0 and 0 <= --test-fraction < 1")
    from trl_ground.data.synthetic import make_synthetic_dataset

    train, test, root = make_synthetic_dataset(args.out, args.n, args.seed, args.test_fraction, args.size, args.max_objects)
    print(f"wrote {train}, {test} (images under {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
