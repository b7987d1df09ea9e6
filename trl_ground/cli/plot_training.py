"""Plot a run's logged loss components (lm_loss, iou_loss, fp_loss, fn_loss, F1; train and
eval) against the optimizer step, to a PNG.

    trl-ground-plot runs/demo                    # -> runs/demo/training.png
"""

from __future__ import annotations

import sys

from .common import ArgumentParser, command


@command
def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="trl-ground-plot", description=__doc__)
    ap.add_argument("run_dir", help="the run's output_dir (its trainer_state.json, or its last checkpoint's, is read)")
    ap.add_argument("--out", default=None, help="the PNG to write (default: RUN_DIR/training.png)")
    args = ap.parse_args(argv)
    from trl_ground.inference.viz import plot_training

    print(plot_training(args.run_dir, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
