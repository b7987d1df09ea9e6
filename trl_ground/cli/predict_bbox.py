"""Predict boxes with a trained model.

    trl-ground-predict --model runs/qlora/final_merged --test-json data/test.json --img-root data --out outputs.json
    trl-ground-predict --model runs/qlora/final --root images/ --class ship --out outputs.json     # adapters: base from adapter_config.json
    trl-ground-predict --model BASE --adapter runs/qlora/checkpoint-500 --root images/ --class ship --out outputs.json
    python eval/generate_outputs_bbox.py --root images/ --model runs/qlora/final_merged --out outputs.json   # the reference script's usage

``outputs.json``: one entry per query with the raw ``answer``, ``boxes`` (xyxy in [0, 1]),
``boxes_px`` (pixels of the original image), ``labels``, ``scores`` (confidence per box:
geometric mean of the probabilities of the box's coordinate tokens), ``valid_json``,
``truncated`` and ``num_tokens`` (tokens generated, the end token included).

**Images that cannot be read** (truncated, corrupt, not an image; in a ``--root`` folder or
a ``--test-json``) are skipped with a ``warning:`` line and listed in ``<out>.errors.json``
(beside ``--out``: ``outputs.errors.json``, written only when something was skipped): a
JSON list of ``{"error": reason}``, plus ``image_path`` / ``class`` / ``image`` for an image
that failed while predicting. A record of ``--test-json`` is checked (image opened) first;
an invalid one is skipped and listed with the reason naming the file, record and field.

**Nothing is lost on a crash**: answers are appended to ``<out>.partial`` (JSON Lines, one
answer per line) as they come; ``--out`` (a JSON list) is written at the end, or with the
answers so far when the run fails or is interrupted; then the ``.partial`` file is removed.

``--model`` takes a merged or full model, or LoRA adapters (a LoRA run's ``final/`` or
``checkpoint-N``): those load on the base named in their ``adapter_config.json``, or on
``--base-model``. A missing ``--model`` / ``--adapter`` directory, a base that cannot be
found, or unusable inputs, are one ``error:`` line and exit 2, before the model is loaded.

**Large, crowded images** (``--tile SIZE``): each query is asked tile by tile (``SIZE`` px
every ``SIZE - --overlap`` px, the last tile flush with the edge; ``--tile-with-full`` also
asks about the whole image), the tiles' boxes are mapped back onto the image and merged class
by class (``--merge union``: the pieces an object's tiles saw become their enclosing box;
``nms``: the best-scored piece stays; matched at ``--merge-metric`` IoS or IoU >=
``--merge-threshold``; a merged box keeps its group's highest score). Each answer is then the
image's, as without tiles (plus ``tiles``: each tile's window, answer and box count), so
``trl-ground-eval`` scores it against the original images' ground truth.

``--coco-results FILE`` also writes the answers in the COCO results format (``image_id``,
``category_id``, pixel ``bbox`` ``[x, y, w, h]``, ``score``: the confidence above), with the
ids of ``--coco-annotations`` (your COCO ground truth; images matched by ``file_name``,
categories by name) or, without it, deterministic ids and the matching ground truth written
to ``FILE`` with the suffix ``.gt.json`` (see :mod:`trl_ground.data.formats.coco_results`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..config.data import PROMPT_MODES
from .common import ArgumentParser, add_model_options, add_prompt_options, command, error_line, fail, prompt_words

__all__ = ["main"]


def parse_args(argv=None):
    ap = ArgumentParser(description=__doc__)  # prog: the name it was called by (also eval/generate_outputs_bbox.py)
    add_model_options(ap)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", help="folder of images to ask about --class / --prompt")
    src.add_argument("--test-json", "--test_json", help="JSON in the training format: the training prompts")
    ap.add_argument("--img-root", "--img_root", help="image root of --test-json (default: its folder)")
    ap.add_argument("--class", dest="cls", default="object", help="class to look for in a --root folder")
    ap.add_argument("--prompt", help="a custom query for a --root folder")
    ap.add_argument("--prompt-mode", "--prompt_mode", default="primary", choices=PROMPT_MODES,
                    help="with --test-json: the prompts to ask (as in training)")
    ap.add_argument("--add-negatives", "--add_negatives", action="store_true",
                    help="with --test-json: also ask, per image, about a class absent from it")
    ap.add_argument("--out", required=True, help="the answers, a JSON list (outputs.json)")
    ap.add_argument("--batch-size", type=int, default=8, help="queries per generate call")
    ap.add_argument("--max-new-tokens", type=int, default=512, help="token limit of an answer: room for ~20 boxes")
    ap.add_argument("--max-pixels", type=int, default=448 * 448, help="images are resized to at most this many pixels")
    ap.add_argument("--min-pixels", type=int, default=32 * 32, help="... and at least this many")
    add_prompt_options(ap)
    ap.add_argument("--load-in-4bit", action="store_true", help="load the model in 4-bit NF4 (CUDA)")
    ap.add_argument("--tile", type=int, default=0, metavar="SIZE", help="ask about tiles of SIZE px and merge their boxes (0: the whole image)")
    ap.add_argument("--overlap", type=int, default=200, metavar="PX", help="with --tile: pixels shared by neighbouring tiles")
    ap.add_argument("--tile-with-full", action="store_true", help="with --tile: also ask about the whole image (large objects)")
    ap.add_argument("--merge", default="union", choices=["union", "nms"],
                    help="with --tile: union (a merged box encloses its group) or nms (the best-scored box of a group stays)")
    ap.add_argument("--merge-metric", default="ios", choices=["ios", "iou"],
                    help="with --tile: how boxes of two tiles match (ios: intersection over the smaller box)")
    ap.add_argument("--merge-threshold", type=float, default=0.5, help="with --tile: boxes of two tiles match at or above this")
    ap.add_argument("--viz", help="draw predictions (and ground truth) as PNG into this folder")
    ap.add_argument("--coco-results", help="also write the answers as COCO results (JSON list) to this file")
    ap.add_argument("--coco-annotations", help="with --coco-results: the COCO ground truth whose image / category ids to use")
    args = ap.parse_args(argv)
    if args.coco_annotations and not args.coco_results:
        ap.error("--coco-annotations needs --coco-results")
    args.slicing = _slicing(ap, args)
    return args


def _slicing(ap, args):
    """The ``--tile`` options as :class:`~trl_ground.inference.sliced_predict.SliceSettings`, or None."""
    tile_options = ("overlap", "tile_with_full", "merge", "merge_metric", "merge_threshold")
    if not args.tile:
        if any(getattr(args, name) != ap.get_default(name) for name in tile_options):
            ap.error("--overlap, --tile-with-full and --merge* need --tile SIZE")
        return None
    from ..inference.sliced_predict import SliceSettings

    try:
        return SliceSettings(args.tile, args.overlap, args.tile_with_full, args.merge, args.merge_metric, args.merge_threshold)
    except ValueError as err:
        ap.error(str(err))


def _items(args) -> tuple[list, dict, list[dict], list]:
    """``(items, ground-truth boxes by item index, skipped records as error entries, records)``."""
    from ..config.data import DataArguments
    from ..data.dataset import build_examples
    from ..data.records import load_records
    from ..inference.predict import items_from_examples, items_from_folder

    if args.root:
        query = args.prompt or (args.query_template.replace("{class}", args.cls) if args.query_template else None)
        return items_from_folder(args.root, args.cls, query), {}, [], []
    records, skipped = load_records(args.test_json, args.img_root or Path(args.test_json).parent, on_bad_record="skip")
    rows = build_examples(records, DataArguments(prompt_mode=args.prompt_mode, add_negatives=args.add_negatives, **prompt_words(args)))
    if not rows:
        raise ValueError(f"{args.test_json}: no query to ask ({len(records)} valid records, {len(skipped)} skipped)")
    return items_from_examples(rows), {i: r["gt_boxes"] for i, r in enumerate(rows)}, [{"error": why} for why in skipped], records


def _write_json(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` atomically (complete or absent)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _answers(args, model, processor, items, system_prompt: str):
    """The answers to ``items``, one by one: asked about the whole images, or tile by tile (``--tile``)."""
    options = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "max_pixels": args.max_pixels,
               "min_pixels": args.min_pixels, "system_prompt": system_prompt}
    if args.slicing is None:
        from ..inference.predict import iter_predictions

        return iter_predictions(model, processor, items, **options)
    from ..inference.sliced_predict import iter_sliced_predictions

    return iter_sliced_predictions(model, processor, items, args.slicing, **options)


def _run(args, model, processor, items, out: Path, errors: list[dict]) -> list[dict]:
    """Predict, appending each answer to ``<out>.partial``; writes ``out`` at the end or on
    failure (the answers so far), then removes the partial file."""
    from ..config.data import DataArguments

    partial = out.with_name(out.name + ".partial")
    results: list[dict] = []
    try:
        with partial.open("w") as stream:
            words = prompt_words(args)
            system_prompt = words.get("system_prompt", DataArguments().system_prompt)
            for result in _answers(args, model, processor, items, system_prompt):
                if "error" in result:
                    print(f"warning: skipped {result['image_path']}: {result['error']}", file=sys.stderr)
                    errors.append(result)
                    continue
                results.append(result)
                stream.write(json.dumps(result) + "\n")
                stream.flush()
    except BaseException:
        _write_json(out, results)
        partial.unlink(missing_ok=True)
        print(f"error: prediction stopped after {len(results)} of {len(items)} queries; those answers are in {out}",
              file=sys.stderr)
        raise
    finally:
        _write_errors(out, errors)
    _write_json(out, results)
    partial.unlink(missing_ok=True)
    return results


def errors_path(out: Path) -> Path:
    """``outputs.json`` -> ``outputs.errors.json``: where skipped images are listed."""
    return out.with_name(out.stem + ".errors.json") if out.suffix == ".json" else out.with_name(out.name + ".errors.json")


def _write_errors(out: Path, errors: list[dict]) -> None:
    path = errors_path(out)
    if errors:
        _write_json(path, errors)
    else:
        path.unlink(missing_ok=True)  # a list from an earlier run would mislead


@command
def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ..inference.predict import load_for_inference
    from ..model.source import resolve_model_source

    out = Path(args.out)
    try:
        source = resolve_model_source(args.model, args.adapter, args.base_model)
        if args.coco_annotations:
            from ..data.formats.coco import read_coco

            read_coco(args.coco_annotations)  # fail before the model loads
        items, truth, errors, records = _items(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK):
            raise ValueError(f"cannot write to {out.parent} (--out {out})")
    except (ValueError, OSError) as err:
        return fail(err)
    try:
        model, processor = load_for_inference(source.base, source.adapter, args.load_in_4bit)
    except (ValueError, OSError) as err:  # e.g. a Hub id that does not exist
        return fail(f"cannot load {source.base}: {error_line(err)}")
    results = _run(args, model, processor, items, out, errors)
    if not results:
        return fail(f"no answer: every image was skipped (listed in {errors_path(out)})")
    print(f"{len(results)} answers -> {out}")
    if errors:
        print(f"{len(errors)} skipped (listed in {errors_path(out)})")
    if args.coco_results:
        from ..data.formats.coco_results import write_coco_results

        try:
            written = write_coco_results(results, args.coco_results, args.coco_annotations, records)
        except ValueError as err:
            return fail(err)
        print(f"{written['boxes']} boxes as COCO results -> {written['results']} (ids of {written['ground_truth']})")
    if args.viz:
        _draw(args, results, truth, items)
    return 0


def _draw(args, results, truth, items) -> None:
    from ..data.images import IMAGE_ERRORS
    from ..inference.viz import answer_note, draw_boxes

    by_path_query = {(it.image_path, it.query): i for i, it in enumerate(items)}
    from tqdm.auto import tqdm

    for n, r in enumerate(tqdm(results, desc="drawing", unit="picture")):
        i = by_path_query.get((r["image_path"], r["query"]))
        name = f"{n:05d}_{Path(r['image_path']).stem}.png"
        try:
            note = answer_note(len(r["boxes"]), r.get("valid_json", True), r.get("truncated", False), r.get("num_tokens"))
            draw_boxes(r["image_path"], Path(args.viz) / name, r["boxes"], r["scores"], truth.get(i, []), r["class"], note)
        except IMAGE_ERRORS as err:
            print(f"warning: cannot draw {r['image_path']}: {err}", file=sys.stderr)
    print(f"pictures -> {args.viz}")


if __name__ == "__main__":
    sys.exit(main())
