"""A synthetic grounding dataset in the reference script's format, deterministic for a seed.

Aerial-style scenes: classes drawn as distinguishable shapes (``ship``: a long hull with
a pointed bow; ``airplane``: fuselage and wings; ``vehicle``: a small rectangle with a
cab; ``storage tank``: a disc with a ring), of varied size, colour and rotation, on
textured backgrounds, 0 to ``max_objects`` per image. Objects carry ``obj_position`` (a
cell of a 3x3 grid), ``obj_size`` (small / medium / large by area) and ``is_unique``
(no other object of the image has the same class, size and position).

    python scripts/make_synthetic_data.py --out data/synthetic --n 200 --seed 0
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["CLASSES", "make_synthetic_dataset", "make_scene"]

CLASSES = ("ship", "airplane", "vehicle", "storage tank")
_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "center", "right")


def _shape(cls: str, rng: np.random.Generator) -> np.ndarray:
    """Polygon ``(P, 2)`` of a class in unit coordinates around the origin (length ~1)."""
    if cls == "ship":
        w = rng.uniform(0.14, 0.22)
        return np.array([[-0.5, -w], [0.25, -w], [0.5, 0.0], [0.25, w], [-0.5, w]])
    if cls == "airplane":
        f, s = 0.08, rng.uniform(0.4, 0.5)
        return np.array(
            [[-0.5, -f], [-0.05, -f], [0.05, -s], [0.2, -s], [0.15, -f], [0.5, -f * 0.5],
             [0.5, f * 0.5], [0.15, f], [0.2, s], [0.05, s], [-0.05, f], [-0.5, f]]
        )
    if cls == "vehicle":
        return np.array([[-0.5, -0.28], [0.5, -0.28], [0.5, 0.28], [-0.5, 0.28]])
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)  # storage tank: a disc
    return 0.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8: a colour gradient with coarse and fine noise."""
    base = rng.uniform(60, 160, size=3)
    tilt = rng.uniform(-40, 40, size=(2, 3))
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = base + xx[..., None] * tilt[0] + yy[..., None] * tilt[1]
    coarse = rng.normal(0, 12, size=(size // 16 + 1, size // 16 + 1, 1)).repeat(16, 0).repeat(16, 1)[:size, :size]
    img = img + coarse + rng.normal(0, 6, size=(size, size, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def _position(cx: float, cy: float) -> str:
    row, col = _ROWS[min(int(cy * 3), 2)], _COLS[min(int(cx * 3), 2)]
    return "center" if (row, col) == ("middle", "center") else f"{row} {col}"


def _size_name(area: float) -> str:
    return "small" if area < 0.012 else "medium" if area < 0.04 else "large"


def make_scene(rng: np.random.Generator, size: int = 128, max_objects: int = 8, classes=CLASSES):
    """One image and its objects. Returns ``(PIL.Image, objects)`` with ``bbox_aabb`` xyxy in [0, 1]."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(0, max_objects + 1))
    placed: list[np.ndarray] = []
    objects = []
    for _ in range(n * 4):  # rejection sampling: objects may touch but not overlap much
        if len(objects) == n:
            break
        cls = str(rng.choice(classes))
        length = rng.uniform(0.08, 0.3) * (0.6 if cls == "vehicle" else 1.0)
        angle = rng.uniform(0, 2 * math.pi) if cls != "storage tank" else 0.0
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        poly = _shape(cls, rng) * length @ rot.T
        lo, hi = poly.min(0), poly.max(0)
        centre = rng.uniform(-lo + 0.01, 0.99 - hi)
        poly = poly + centre
        box = np.concatenate([poly.min(0), poly.max(0)])
        if any(_overlap_fraction(box, other) > 0.2 for other in placed):
            continue
        placed.append(box)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.polygon([(float(x * size), float(y * size)) for x, y in poly], fill=colour, outline=(0, 0, 0))
        if cls == "storage tank":
            r = length * 0.25 * size
            cx, cy = centre * size
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(255, 255, 255))
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        objects.append(
            {
                "obj_id": len(objects),
                "class": cls,
                "bbox_aabb": [round(float(v), 4) for v in box],
                "obj_position": _position(*centre),
                "obj_size": _size_name(area),
            }
        )
    keys = [(o["class"], o["obj_size"], o["obj_position"]) for o in objects]
    for o, key in zip(objects, keys):
        o["is_unique"] = keys.count(key) == 1
    return img, objects


def _overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def _write_scenes(out: Path, seed: int, indices: range, size: int, max_objects: int) -> list[dict]:
    """Draw and save the scenes ``indices`` (scene ``i`` from its own RNG, ``(seed, i)``, so
    the dataset does not depend on how the work is split); their records in order."""
    records = []
    for i in indices:
        img, objects = make_scene(np.random.default_rng([seed, i]), size=size, max_objects=max_objects)
        name = f"scene_{seed}_{i:05d}.png"
        img.save(out / "images" / name)
        records.append({"image": name, "image_path": f"images/{name}", "caption": f"{len(objects)} objects", "objects": objects})
    return records


def make_synthetic_dataset(
    out_dir,
    n: int = 200,
    seed: int = 0,
    test_fraction: float = 0.2,
    size: int = 128,
    max_objects: int = 8,
    val_fraction: float = 0.0,
    workers: int = 1,
):
    """Write ``images/*.png``, ``train.json`` and ``test.json`` (and ``val.json`` when
    ``val_fraction > 0``) under ``out_dir``, drawing with ``workers`` processes.

    The last ``n * test_fraction`` scenes are test, the ``n * val_fraction`` before them
    validation, the rest training. Deterministic for a seed, whatever ``workers``. Returns
    the paths ``(train_json, test_json, img_root)``.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if workers > 1 and n > workers:
        from concurrent.futures import ProcessPoolExecutor

        bounds = np.linspace(0, n, workers + 1).astype(int)
        with ProcessPoolExecutor(workers) as pool:
            parts = pool.map(_write_scenes, *zip(*[(out, seed, range(a, b), size, max_objects) for a, b in zip(bounds[:-1], bounds[1:])]))
            records = [r for part in parts for r in part]
    else:
        records = _write_scenes(out, seed, range(n), size, max_objects)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    n_train = n - n_test - n_val
    train, val, test = records[:n_train], records[n_train : n - n_test], records[n - n_test :]
    (out / "train.json").write_text(json.dumps(train, indent=1))
    (out / "test.json").write_text(json.dumps(test, indent=1))
    if n_val:
        (out / "val.json").write_text(json.dumps(val, indent=1))
    return out / "train.json", out / "test.json", out
