"""Large images as tiles: records -> tile records, in memory for training (``--tile-size``)
or written as image files by ``trl-ground-convert-data --tile``.

The grid and the boxes follow :mod:`trl_ground.data.tiling` (DOTA's split: ``size`` px tiles
every ``size - overlap`` px, the last flush with the edge; a box is kept where the tile holds
at least ``min_visible`` of its area, clipped and normalized to the tile). Tiles holding no
box are left out (in the prompt modes they would give no example). Each tile keeps its
objects' class and ids; ``is_unique`` / ``obj_position`` / ``obj_size`` describe the whole
image, so a tile drops them.

A box that no tile keeps (larger than a tile, or cut so that no tile holds ``min_visible``
of it) is lost: :class:`TilingReport` counts such boxes and names the first records.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .images import image_size, open_rgb
from .records import GroundingObject, GroundingRecord
from .tiling import boxes_to_tile, check_tiling, tile_grid

__all__ = ["TilingReport", "tile_records", "write_tiles"]

logger = logging.getLogger(__name__)

# Fields of an object that describe it within the whole image (wrong within a tile).
_IMAGE_LEVEL_KEYS = ("is_unique", "obj_position", "obj_size")
_DECIMALS = 6
_NAMED = 5


@dataclass
class TilingReport:
    """What tiling made of a set of records (pixels, boxes and tiles counted)."""

    size: int
    overlap: int
    min_visible: float
    images: int = 0
    tiles: int = 0
    empty_tiles: int = 0
    boxes_lost: int = 0
    lost_in: list = field(default_factory=list)

    def line(self) -> str:
        """What was cut, in one line."""
        return (f"tiles: {self.tiles} of {self.size} px (overlap {self.overlap} px) from {self.images} images; "
                f"{self.empty_tiles} tiles without a box left out")

    def lost_line(self) -> str | None:
        """The boxes no tile kept, naming the first records (for a warning); None if none."""
        if not self.boxes_lost:
            return None
        return (
            f"{self.boxes_lost} boxes are in no tile (larger than a {self.size} px tile, or no tile holds "
            f"{self.min_visible:g} of their area): {', '.join(self.lost_in[:_NAMED])}; larger tiles keep them"
        )


def _tiles(boxes: np.ndarray, size_px: tuple[int, int], report: TilingReport, where: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(window (4,), tile boxes (K, 4) tile space, kept (K,) indices)`` of each tile that
    holds a box; counts the tiles and the lost boxes in ``report``."""
    report.images += 1
    seen = np.zeros(len(boxes), dtype=bool)
    for window in tile_grid(*size_px, report.size, report.overlap):
        tile_boxes, kept = boxes_to_tile(boxes, size_px, window, report.min_visible)
        if len(kept) == 0:
            report.empty_tiles += 1
            continue
        seen[kept] = True
        report.tiles += 1
        yield window, tile_boxes, kept
    lost = int((~seen).sum())
    if lost:
        report.boxes_lost += lost
        report.lost_in.append(f"{where} ({lost})")


def tile_records(
    records: list[GroundingRecord], size: int, overlap: int, min_visible: float = 0.5, source: str = ""
) -> tuple[list[GroundingRecord], TilingReport]:
    """Every record as its tiles, in memory: each tile a record with ``crop`` (its pixel
    window) and its objects' boxes in the tile's [0, 1]; ``index`` stays the source record's.

    Image sizes are read from the files' headers. Returns ``(tile records, report)``.
    """
    check_tiling(size, overlap, min_visible)
    report = TilingReport(size, overlap, min_visible)
    out = []
    for rec in records:
        boxes = np.asarray([o.box for o in rec.objects], dtype=np.float64).reshape(-1, 4)
        for window, tile_boxes, kept in _tiles(boxes, image_size(rec.image_path), report, f"{source}: record {rec.index}"):
            objects = tuple(
                GroundingObject(rec.objects[j].cls, tuple(map(float, box)), rec.objects[j].obj_id) for j, box in zip(kept, tile_boxes)
            )
            out.append(replace(rec, objects=objects, crop=tuple(int(v) for v in window)))
    return out, report


def _tile_name(image_path: str, window) -> str:
    """``sub/P0001.png`` + window -> ``sub/P0001__x0_y0.png`` (DOTA_devkit's naming, without the scale)."""
    p = Path(image_path)
    return str(p.with_name(f"{p.stem}__{int(window[0])}_{int(window[1])}.png"))


def write_tiles(
    records: list[dict], img_root, out_dir, size: int, overlap: int, min_visible: float = 0.5, source: str = ""
) -> tuple[list[dict], TilingReport]:
    """Cut every image of ``records`` (the project's record dicts, images under ``img_root``)
    into tiles written as PNG files under ``out_dir``.

    Returns ``(tile records, report)``: one record per tile holding a box, its ``image_path``
    relative to ``out_dir``, its objects' ``bbox_aabb`` in the tile's [0, 1], plus
    ``source_image`` (the image it was cut from) and ``tile`` (its pixel window there).
    """
    check_tiling(size, overlap, min_visible)
    report = TilingReport(size, overlap, min_visible)
    out_dir = Path(out_dir)
    tiles = []
    for index, rec in enumerate(records):
        rel = rec.get("image_path") or rec["image"]
        objects = rec.get("objects", [])
        boxes = np.asarray([o["bbox_aabb"] for o in objects], dtype=np.float64).reshape(-1, 4)
        image = None
        for window, tile_boxes, kept in _tiles(boxes, image_size(Path(img_root) / rel), report, f"{source}: record {index}"):
            if image is None:
                image = open_rgb(Path(img_root) / rel)
            name = _tile_name(rel, window)
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            image.crop(tuple(int(v) for v in window)).save(out_dir / name)
            tile_objects = [
                {**{k: v for k, v in objects[j].items() if k not in _IMAGE_LEVEL_KEYS}, "bbox_aabb": np.round(box, _DECIMALS).tolist()}
                for j, box in zip(kept, tile_boxes)
            ]
            tiles.append({"image": Path(name).name, "image_path": name, "objects": tile_objects,
                          "source_image": rel, "tile": [int(v) for v in window]})
    return tiles, report
