"""Plot a run's logged loss components (lm_loss, iou_loss, fp_loss, fn_loss, F1) to a PNG.

    trl-ground-plot runs/demo [--out runs/demo/training.png]
"""

from __future__ import annotations

import argparse
import sys



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    from trl_ground.viz import plot_training

    try:
        print(plot_training(args.run_dir, args.out))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
