"""Convert COCO / YOLO / DOTA / Hugging Face data into the project's JSON, validated as training validates.

    trl-ground-convert-data --from coco --annotations instances.json --img-root images/ --out data/train.json
    trl-ground-convert-data --from yolo --images images/ --labels labels/ --classes classes.txt --out data/train.json
    trl-ground-convert-data --from dota --images images/ --labels labelTxt/ --out data/train.json [--drop-difficult]
    trl-ground-convert-data --from hf --dataset DIR_OR_NAME --split train --img-root data/hf_images --out data/train.json
    trl-ground-convert-data --from dota --images images/ --labels labelTxt/ --tile 1024 --overlap 200 --out data/tiles.json
    trl-ground-convert-data --from json --annotations data/train.json --img-root data/ --tile 1024 --out data/tiles.json

Prints a summary (images, boxes per class, what was dropped and why) and the ``--img-root``
that training needs with the written file; ``--check`` then runs the dataset checker on it.
Malformed input exits 1 with one line naming the file and line or annotation id (``--on-bad-record
skip`` leaves such images out and counts them); a wrong command line exits 2.

``--tile SIZE`` cuts every image into tiles (DOTA's split: ``SIZE`` px every ``SIZE -
--overlap`` px, the last flush with the edge) written as PNG files under ``--tile-dir``
(default: ``<out>_tiles/`` beside ``--out``); a box goes to each tile holding at least
``--min-visible`` of its area, clipped and normalized to the tile; tiles without a box are
left out. The records written are the tiles' (``source_image`` and ``tile`` say where each
was cut from), and ``--img-root`` for training is the tile folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import ArgumentParser, command, fail

__all__ = ["main"]

# which command-line options each format reads (dest -> the converter's keyword)
_OPTIONS = {
    "coco": {"annotations": "annotations", "img_root": "img_root", "keep_crowd": "keep_crowd"},
    "yolo": {"images": "images", "labels": "labels", "classes": "classes"},
    "dota": {"images": "images", "labels": "labels", "drop_difficult": "drop_difficult"},
    "json": {"annotations": "annotations", "img_root": "img_root"},
    "hf": {"dataset": "dataset", "img_root": "img_root", "split": "split", "bbox_format": "bbox_format",
           "bbox_normalized": "bbox_normalized", "image_column": "image_column", "objects_column": "objects_column",
           "bbox_key": "bbox_key", "category_key": "category_key"},
}


class _UsageError(ValueError):
    pass


def _parser() -> ArgumentParser:
    from trl_ground.data.formats import BBOX_FORMATS, FORMATS

    ap = ArgumentParser(prog="trl-ground-convert-data", description=__doc__)
    ap.add_argument("--from", dest="fmt", required=True, choices=sorted(FORMATS),
                    help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()))
    ap.add_argument("--out", required=True, help="the JSON to write (the project's training format)")
    ap.add_argument("--annotations", help="coco: the COCO JSON; json: the project's JSON")
    ap.add_argument("--img-root", "--img_root", help="coco: the images' root; hf: where the images are written; yolo/dota: same as --images")
    ap.add_argument("--images", help="yolo/dota: the image folder (searched recursively)")
    ap.add_argument("--labels", help="yolo/dota: the label folder mirroring --images")
    ap.add_argument("--classes", help="yolo: class names, one a line (line i names id i), or a data.yaml with 'names'")
    ap.add_argument("--keep-crowd", action="store_true", help="coco: keep iscrowd annotations (default: dropped)")
    ap.add_argument("--drop-difficult", action="store_true", help="dota: leave out objects marked difficult")
    ap.add_argument("--dataset", help="hf: a save_to_disk directory, or a dataset name for datasets.load_dataset")
    ap.add_argument("--split", help="hf: the split (default: the only one, else 'train')")
    ap.add_argument("--bbox-format", default="coco", choices=BBOX_FORMATS,
                    help="hf: coco = [x, y, w, h] (default), xyxy = [x1, y1, x2, y2], yolo = [cx, cy, w, h] normalized")
    ap.add_argument("--bbox-normalized", action="store_true", help="hf: coco/xyxy boxes are in [0, 1] of the image, not pixels")
    ap.add_argument("--image-column", default="image", help="hf: the Image column")
    ap.add_argument("--objects-column", default="objects", help="hf: the objects column")
    ap.add_argument("--bbox-key", default="bbox", help="hf: the box field inside objects")
    ap.add_argument("--category-key", default="category", help="hf: the category field inside objects")
    ap.add_argument("--on-bad-record", default="error", choices=["error", "skip"],
                    help="malformed input: stop with the error (default) or leave its image out")
    ap.add_argument("--tile", type=int, default=0, metavar="SIZE", help="cut the images into tiles of SIZE px, written as files (0: no tiling)")
    ap.add_argument("--overlap", type=int, default=200, metavar="PX", help="with --tile: pixels shared by neighbouring tiles")
    ap.add_argument("--min-visible", type=float, default=0.5,
                    help="with --tile: a box goes to a tile holding at least this fraction of its area (clipped to it)")
    ap.add_argument("--tile-dir", help="with --tile: where the tile images go (default: <out>_tiles beside --out)")
    ap.add_argument("--summary", help="also write the summary as JSON to this file")
    ap.add_argument("--check", action="store_true", help="then check the result as training reads it (trl-ground-check-data)")
    return ap


def _options(ap: ArgumentParser, args) -> dict:
    """The converter's keyword arguments; usage errors for missing or foreign options."""
    if args.fmt in ("yolo", "dota") and args.images is None:
        args.images = args.img_root
    wanted = _OPTIONS[args.fmt]
    for dest in {d for opts in _OPTIONS.values() for d in opts} - set(wanted):
        if getattr(args, dest) != ap.get_default(dest) and not (dest == "img_root" and args.fmt in ("yolo", "dota")):
            raise _UsageError(f"--{dest.replace('_', '-')} does not apply to --from {args.fmt}")
    from trl_ground.data.formats import FORMATS

    missing = [d for d in FORMATS[args.fmt].required if getattr(args, d) is None]
    if missing:
        raise _UsageError(f"--from {args.fmt} needs " + ", ".join(f"--{d.replace('_', '-')}" for d in missing))
    if args.tile:
        from trl_ground.data.tiling import check_tiling

        check_tiling(args.tile, args.overlap, args.min_visible)
    elif args.tile_dir or args.overlap != ap.get_default("overlap") or args.min_visible != ap.get_default("min_visible"):
        raise _UsageError("--overlap, --min-visible and --tile-dir need --tile SIZE")
    return {kw: getattr(args, dest) for dest, kw in wanted.items()}


def _tile(args, records: list[dict], summary, out: Path) -> tuple[list[dict], str]:
    """``(tile records, their image root)``: the images of ``records`` cut by ``--tile``."""
    from trl_ground.data.tiled_data import write_tiles

    tile_dir = Path(args.tile_dir) if args.tile_dir else out.with_name(out.stem + "_tiles")
    tiles, report = write_tiles(records, summary.img_root, tile_dir, args.tile, args.overlap, args.min_visible, summary.source)
    print(report.line())
    if report.boxes_lost:
        print(f"warning: {report.lost_line()}", file=sys.stderr)
    return tiles, str(tile_dir)


@command
def main(argv: list[str]) -> int:
    ap = _parser()
    args = ap.parse_args(argv)  # usage errors: ValueError, exit 2
    options = _options(ap, args)
    from trl_ground.data.formats import convert
    from trl_ground.train.data_summary import summarize
    from trl_ground.train.lengths import DEFAULT_MAX_LENGTH

    try:
        records, summary = convert(args.fmt, on_bad_record=args.on_bad_record, **options)
    except ValueError as err:
        return fail(err, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print("\n".join(summary.lines()))
    img_root = summary.img_root
    if args.tile:
        records, img_root = _tile(args, records, summary, out)
    out.write_text(json.dumps(records, indent=1))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary.to_dict(), indent=2))
    print(f"wrote {len(records)} records -> {out}")
    print(f"train with: --train-json {out} --img-root {img_root}")
    if args.check:
        try:
            print(summarize(out, img_root, on_bad_record=args.on_bad_record, max_length=DEFAULT_MAX_LENGTH))
        except ValueError as err:
            return fail(err, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
