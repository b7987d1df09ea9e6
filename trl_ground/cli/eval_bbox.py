"""Score predictions against ground truth.

    trl-ground-eval --pred outputs.json --gt data/test.json --out metrics.json [--img-root data] [--viz DIR]
                                [--prompt-mode primary|per_class|referring] [--add-negatives | --no-add-negatives]

``--pred`` is ``trl-ground-predict``'s output, or a file in the training (reference script's) format, so that
a file can be scored against itself. Every query of ``--gt`` is scored: a query without a
prediction counts as an empty answer. The queries are those of ``--prompt-mode`` (default:
the mode written in the predictions' ``mode`` fields, else ``primary``; ``per_class`` for a
training-format file) and, with ``--add-negatives`` (default: when the predictions hold
negative queries), one negative query per image. Missing, unknown, duplicate and
out-of-range predictions are counted in ``counts`` and each kind is one ``warning:`` line.

Writes ``metrics.json`` (top-level ``precision``, ``recall``, ``f1``, ``mean_iou``, ``ap50``;
also ``ap75``, ``at_iou_0.75``, ``with_boxes``, ``without_boxes``, ``empty_fraction_positive``,
``hallucination_fraction_negative``, ``unparseable_fraction``, ``duplicate_fraction``,
``tokens_per_answer``, ``referring``, ``per_class``, ``counts``) and prints Markdown tables.
Exit 2 with one ``error:`` line when the files cannot be scored (empty or mismatched
predictions, malformed entries).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..config.data import PROMPT_MODES
from .common import ArgumentParser, command

__all__ = ["main"]


@command
def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="trl-ground-eval", description=__doc__)
    ap.add_argument("--pred", required=True, help="predictions: trl-ground-predict's outputs.json (or a file in the training format)")
    ap.add_argument("--gt", required=True, help="the ground truth: a JSON in the training format (e.g. test.json)")
    ap.add_argument("--img-root", "--img_root", help="image root of --gt (default: its folder)")
    ap.add_argument("--out", required=True, help="the metrics JSON to write")
    ap.add_argument("--prompt-mode", "--prompt_mode", choices=PROMPT_MODES, default=None,
                    help="prompt mode of the predictions (default: from their 'mode' fields, else primary)")
    ap.add_argument("--add-negatives", "--add_negatives", action=argparse.BooleanOptionalAction, default=None,
                    help="expect one negative query per image (default: when the predictions hold negative queries)")
    ap.add_argument("--viz", help="draw ground truth and predictions as PNG into this folder")
    args = ap.parse_args(argv)
    from ..inference.evaluate import evaluate, markdown_report

    metrics = evaluate(args.pred, args.gt, args.img_root, args.prompt_mode, args.add_negatives)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(metrics, indent=2))
    print(markdown_report(metrics))
    print(f"metrics -> {args.out}", file=sys.stderr)  # stdout is the report alone: `> metrics.md`
    if args.viz:
        _draw(args)
    return 0


def _draw(args) -> None:
    from ..data.images import IMAGE_ERRORS
    from ..data.records import load_records
    from ..inference.predictions import read_predictions
    from ..inference.viz import answer_note, draw_boxes

    root = Path(args.img_root or Path(args.gt).parent)
    records, _ = load_records(args.gt, root, require_images=False)
    by_image = {r.image: r for r in records}
    from tqdm.auto import tqdm

    for p in tqdm(read_predictions(args.pred).entries, desc="drawing", unit="picture"):
        rec = by_image.get(p.image)
        if rec is None or not rec.image_path.exists():
            continue
        cls = re.sub(r"[^\w.-]+", "_", p.cls)
        name = f"{p.index:05d}_{Path(p.image).stem}_{cls}.png"
        try:
            note = answer_note(len(p.boxes), p.valid_json, p.truncated, p.num_tokens)
            draw_boxes(rec.image_path, Path(args.viz) / name, p.boxes, p.scores, rec.boxes_of(p.cls), p.cls, note)
        except IMAGE_ERRORS as err:
            print(f"warning: cannot draw {rec.image_path}: {err}", file=sys.stderr)
    print(f"pictures -> {args.viz}")


if __name__ == "__main__":
    sys.exit(main())
