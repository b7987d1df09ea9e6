"""Predict boxes with a trained model.

    python scripts/predict_bbox.py --model runs/qlora/final_merged --test-json data/test.json --img-root data --out outputs.json
    python scripts/predict_bbox.py --model BASE --adapter runs/qlora/final --root images/ --class ship --out outputs.json
    python eval/generate_outputs_bbox.py --root images/ --model runs/qlora/final_merged --out outputs.json   # the seed's usage

``outputs.json``: one entry per query with the raw ``answer``, ``boxes`` (xyxy in [0, 1]),
``boxes_px`` (pixels of the original image), ``labels``, ``scores`` (confidence per box:
geometric mean of the probabilities of the box's coordinate tokens), ``valid_json`` and
``truncated``.

``--coco-results FILE`` also writes the answers in the COCO results format (``image_id``,
``category_id``, pixel ``bbox`` ``[x, y, w, h]``, ``score``: the confidence above), with the
ids of ``--coco-annotations`` (your COCO ground truth; images matched by ``file_name``,
categories by name) or, without it, deterministic ids and the matching ground truth written
to ``FILE`` with the suffix ``.gt.json`` (see :mod:`trl_ground.formats.coco_results`).
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="merged/full model directory or id (the base, with --adapter)")
    ap.add_argument("--adapter", help="LoRA adapter directory (final/ of a run)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", help="folder of images to ask about --class / --prompt")
    src.add_argument("--test-json", "--test_json", help="JSON in the training format: the training prompts")
    ap.add_argument("--img-root", "--img_root", help="image root of --test-json (default: its folder)")
    ap.add_argument("--class", dest="cls", default="object", help="class to look for in a --root folder")
    ap.add_argument("--prompt", help="a custom query for a --root folder")
    ap.add_argument("--prompt-mode", default="primary", choices=["primary", "per_class", "referring"])
    ap.add_argument("--add-negatives", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=512, help="room for ~20 boxes")
    ap.add_argument("--max-pixels", type=int, default=448 * 448)
    ap.add_argument("--load-in-4bit", action="store_true")
    ap.add_argument("--viz", help="draw predictions (and ground truth) as PNG into this folder")
    ap.add_argument("--coco-results", help="also write the answers as COCO results (JSON list) to this file")
    ap.add_argument("--coco-annotations", help="with --coco-results: the COCO ground truth whose image / category ids to use")
    args = ap.parse_args(argv)
    if args.coco_annotations and not args.coco_results:
        ap.error("--coco-annotations needs --coco-results")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from trl_ground.data import DataArguments, build_examples
    from trl_ground.predict import items_from_examples, items_from_folder, load_for_inference, predict
    from trl_ground.records import load_records

    truth, records = {}, []
    try:
        if args.coco_annotations:
            from trl_ground.formats.coco import read_coco

            read_coco(args.coco_annotations)  # fail before the model loads
        if args.root:
            items = items_from_folder(args.root, args.cls, args.prompt)
        else:
            records, _ = load_records(args.test_json, args.img_root or Path(args.test_json).parent)
            rows = build_examples(records, DataArguments(prompt_mode=args.prompt_mode, add_negatives=args.add_negatives))
            items = items_from_examples(rows)
            truth = {i: r["gt_boxes"] for i, r in enumerate(rows)}
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    model, processor = load_for_inference(args.model, args.adapter, args.load_in_4bit)
    results = predict(model, processor, items, args.batch_size, args.max_new_tokens, args.max_pixels)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"{len(results)} answers -> {args.out}")
    if args.coco_results:
        from trl_ground.formats.coco_results import write_coco_results

        try:
            written = write_coco_results(results, args.coco_results, args.coco_annotations, records)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{written['boxes']} boxes as COCO results -> {written['results']} (ids of {written['ground_truth']})")
    if args.viz:
        from trl_ground.viz import draw_boxes

        for i, r in enumerate(results):
            name = f"{i:05d}_{Path(r['image_path']).stem}.png"
            draw_boxes(r["image_path"], Path(args.viz) / name, r["boxes"], r["scores"], truth.get(i, []), r["class"])
        print(f"pictures -> {args.viz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
