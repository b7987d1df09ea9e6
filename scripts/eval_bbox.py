"""Score predictions against ground truth.

    python scripts/eval_bbox.py --pred outputs.json --gt data/test.json --out metrics.json [--img-root data] [--viz DIR]

``--pred`` is ``predict_bbox.py``'s output, or a file in the training (seed's) format, so that
a file can be scored against itself. Writes ``metrics.json`` (top-level ``precision``,
``recall``, ``f1``, ``mean_iou``, ``ap50``; also ``ap75``, ``at_iou_0.75``, ``referring``,
``per_class``, ``counts``) and prints Markdown tables.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--img-root", "--img_root", help="image root of --gt (default: its folder)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--viz", help="draw ground truth and predictions as PNG into this folder")
    args = ap.parse_args(argv)
    from trl_ground.evaluate import evaluate, load_predictions, markdown_report

    try:
        metrics = evaluate(args.pred, args.gt, args.img_root)
    except (ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(metrics, indent=2))
    print(markdown_report(metrics))
    if args.viz:
        _draw(args, load_predictions(args.pred))
    return 0


def _draw(args, preds) -> None:
    from trl_ground.records import load_records
    from trl_ground.viz import draw_boxes

    root = Path(args.img_root or Path(args.gt).parent)
    records, _ = load_records(args.gt, root, check_images=False)
    by_image = {r.image: r for r in records}
    for i, p in enumerate(preds):
        rec = by_image.get(p["image"])
        if rec is None or not rec.image_path.exists():
            continue
        draw_boxes(rec.image_path, Path(args.viz) / f"{i:05d}_{Path(p['image']).stem}.png", p.get("boxes", []),
                   p.get("scores", []), rec.boxes_of(p["class"]), p["class"])
    print(f"pictures -> {args.viz}")


if __name__ == "__main__":
    sys.exit(main())
