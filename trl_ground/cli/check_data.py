"""Validate a grounding JSON exactly as training will, and summarize it.

    trl-ground-check-data --train-json data/train.json --img-root data/ [--tokenizer DIR] [--no-image-check]

Every image is opened and decoded (cheaply: PNGs verified, JPEGs decoded at 1/8 scale);
``--no-image-check`` only checks that the files exist (for large trusted sets). Exit 0 when
every record is valid; otherwise exit 2 with one line naming the file, record and field (no
traceback). With ``--on-bad-record skip`` bad records are counted, not fatal. A file that
gives no training example (e.g. every record has ``objects: []`` in the primary mode) is an
error too.
"""

from __future__ import annotations

import argparse
import sys

from ..config.data import PROMPT_MODES
from .common import show_warnings

__all__ = ["main"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-json", "--train_json", required=True)
    ap.add_argument("--img-root", "--img_root", required=True)
    ap.add_argument("--prompt-mode", "--prompt_mode", default="primary", choices=PROMPT_MODES)
    ap.add_argument("--add-negatives", "--add_negatives", action="store_true")
    ap.add_argument("--on-bad-record", "--on_bad_record", default="error", choices=["error", "skip"])
    ap.add_argument("--no-image-check", "--no_image_check", dest="check_images", action="store_false",
                    help="do not open the images (only check that they exist): for large trusted sets")
    ap.add_argument("--tokenizer", help="tokenizer/processor directory or id for the token count (default: the project's byte-level tokenizer)")
    args = ap.parse_args(argv)
    show_warnings()
    from ..data_summary import summarize

    try:
        print(summarize(args.train_json, args.img_root, args.prompt_mode, args.add_negatives, args.on_bad_record, args.tokenizer,
                        check_images=args.check_images))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
