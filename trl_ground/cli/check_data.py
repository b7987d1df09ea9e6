"""Validate a grounding JSON exactly as training will, and summarize it.

    trl-ground-check-data --train-json data/train.json --img-root data/ [--tokenizer DIR] [--no-image-check]
    trl-ground-check-data --train-json data/dense.json --img-root data/ --max-length 4096 --tile-size 1024 --tile-overlap 200

Every image is opened and decoded (cheaply: PNGs verified, JPEGs decoded at 1/8 scale);
``--no-image-check`` only checks that the files exist (for large trusted sets). Exit 0 when
every record is valid; otherwise exit 2 with one line naming the file, record and field (no
traceback). With ``--on-bad-record skip`` bad records are counted, not fatal. A file that
gives no training example (e.g. every record has ``objects: []`` in the primary mode) is an
error too.

Every example is measured in tokens as training builds it (prompt, image tokens at
``--max-pixels``, answer); examples longer than ``--max-length`` (training's default unless
given) are named in a ``warning:`` line (file, record, tokens), since training would cut
their answers. ``--tile-size`` checks the data as training with the same options tiles it.
"""

from __future__ import annotations

import sys

from ..config.data import BAD_RECORD_POLICIES, PROMPT_MODES, DataArguments
from ..train.lengths import DEFAULT_MAX_LENGTH
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
    ap.add_argument("--max-length", "--max_length", type=int, default=DEFAULT_MAX_LENGTH,
                    help="the training run's max_length: longer examples are named in a warning")
    ap.add_argument("--max-pixels", "--max_pixels", type=int, default=DataArguments.max_pixels,
                    help="the training run's max_pixels (image tokens grow with it)")
    ap.add_argument("--min-pixels", "--min_pixels", type=int, default=DataArguments.min_pixels, help="the training run's min_pixels")
    ap.add_argument("--tile-size", "--tile_size", type=int, default=DataArguments.tile_size,
                    help="check the data cut into tiles of this many pixels, as training with --tile-size (0: no tiling)")
    ap.add_argument("--tile-overlap", "--tile_overlap", type=int, default=DataArguments.tile_overlap, help="with --tile-size: pixels shared by neighbouring tiles")
    ap.add_argument("--tile-min-visible", "--tile_min_visible", type=float, default=DataArguments.tile_min_visible,
                    help="with --tile-size: a box goes to a tile holding at least this fraction of its area")
    args = ap.parse_args(argv)
    if args.tokenizer:  # a Hub id offline fails at once, not after minutes of retries
        from ..model.source import check_reachable

        check_reachable(args.tokenizer, "tokenizer", "--tokenizer", "tokenizer_config.json")
    from ..train.data_summary import summarize

    print(summarize(args.train_json, args.img_root, args.prompt_mode, args.add_negatives, args.on_bad_record, args.tokenizer,
                    check_images=args.check_images, max_length=args.max_length, max_pixels=args.max_pixels,
                    min_pixels=args.min_pixels, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                    tile_min_visible=args.tile_min_visible))
    return 0


if __name__ == "__main__":
    sys.exit(main())
