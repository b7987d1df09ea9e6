"""Validate a grounding JSON exactly as training will, and summarize it.

    python scripts/check_data.py --train-json data/train.json --img-root data/ [--tokenizer DIR]

Exit 0 when every record is valid; otherwise exit 1 with one line naming the file, record
and field (no traceback). With ``--on-bad-record skip`` bad records are counted, not fatal.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-json", "--train_json", required=True)
    ap.add_argument("--img-root", "--img_root", required=True)
    ap.add_argument("--prompt-mode", "--prompt_mode", default="primary")
    ap.add_argument("--add-negatives", action="store_true")
    ap.add_argument("--on-bad-record", default="error", choices=["error", "skip"])
    ap.add_argument("--tokenizer", help="tokenizer/processor directory or id for the token count (default: the project's byte-level tokenizer)")
    args = ap.parse_args(argv)

    from trl_ground.data_summary import summarize

    try:
        print(summarize(args.train_json, args.img_root, args.prompt_mode, args.add_negatives, args.on_bad_record, args.tokenizer))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
