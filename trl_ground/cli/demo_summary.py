"""Print what the demo trained and learned (``make demo`` / ``make demo-grpo`` end with it).

    python -m trl_ground.cli.demo_summary runs/demo                 # after trl-ground-predict / -eval / -plot
    python -m trl_ground.cli.demo_summary runs/grpo_demo --grpo
"""

from __future__ import annotations

import sys

from .common import ArgumentParser, command


@command
def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="python -m trl_ground.cli.demo_summary", description=__doc__)
    ap.add_argument("run_dir", help="the demo's output_dir")
    ap.add_argument("--grpo", action="store_true", help="the GRPO demo (reads only the training log)")
    args = ap.parse_args(argv)
    from ..inference.demo_summary import grpo_summary, sft_summary

    print(grpo_summary(args.run_dir) if args.grpo else sft_summary(args.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
