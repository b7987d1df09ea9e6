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

import sys

from ..config.data import BAD_RECORD_POLICIES, PROMPT_MODES
from .common import ArgumentParser, command

__all__ = ["main"]


@command
def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="trl-ground-check-data", description=__doc__)
    ap.add_argument("--train-json", "--train_json", required=True, help="the JSON to check (a list of records, the training format)")
    ap.add_argument("--img-root", "--img_root", required=True, help="the folder that the records' image paths are relative to")
    ap.add_argument("--prompt-mode", "--prompt_mode", default="primary", choices=PROMPT_MODES,
                    help="the prompts training will build: one per image (primary), per class, or per unique object (referring)")
    ap.add_argument("--add-negatives", "--add_negatives", action="store_true",
                    help="also count one query per image for a class absent from it (as training with --add-negatives)")
    ap.add_argument("--on-bad-record", "--on_bad_record", default="error", choices=BAD_RECORD_POLICIES,
                    help="error: stop at the first bad record (exit 2); skip: count bad records and go on")
    ap.add_argument("--no-image-check", "--no_image_check", dest="check_images", action="store_false",
                    help="do not open the images (only check that they exist): for large trusted sets")
    ap.add_argument("--tokenizer", default=None,
                    help="tokenizer/processor directory or id for exact token counts (default: the project's byte-level "
                         "tokenizer, an upper bound)")
    args = ap.parse_args(argv)
    if args.tokenizer:  # a Hub id offline fails at once, not after minutes of retries
        from types import SimpleNamespace

        from ..preflight import check_model

        check_model(SimpleNamespace(model=args.tokenizer, adapter=None))
    from ..data_summary import summarize

    print(summarize(args.train_json, args.img_root, args.prompt_mode, args.add_negatives, args.on_bad_record, args.tokenizer,
                    check_images=args.check_images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
