"""Build COCO / YOLO / DOTA / Hugging Face sources of one ground truth, each in its own
convention, for the converter tests.

The ground truth is the synthetic generator's, on images padded from 128x128 to 160x128
(wider than tall, so that a width / height mix-up cannot pass). One extra image has no
objects.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from trl_ground.synthetic import make_synthetic_dataset

W, H = 160, 128
COCO_IDS = {"ship": 3, "airplane": 7, "vehicle": 1, "storage tank": 12}  # not contiguous, not sorted


def make_truth(base: Path, n: int = 8, seed: int = 3) -> list[dict]:
    """Write ``base/images/*.png``; return ``[{"image", "objects": [(class, [x1, y1, x2, y2])]}]``
    with boxes xyxy normalized to [0, 1] of the 160x128 images."""
    train, _, root = make_synthetic_dataset(base / "synthetic", n=n, seed=seed, test_fraction=0.0)
    (base / "images").mkdir(parents=True)
    truth = []
    for rec in json.loads(Path(train).read_text()) + [None]:
        name = rec["image"] if rec else "empty.png"
        canvas = Image.new("RGB", (W, H), (90, 120, 90))
        if rec:
            with Image.open(root / rec["image_path"]) as img:
                canvas.paste(img, (0, 0))
        canvas.save(base / "images" / name)
        objects = [(o["class"], [o["bbox_aabb"][0] * 128 / W, o["bbox_aabb"][1], o["bbox_aabb"][2] * 128 / W, o["bbox_aabb"][3]])
                   for o in (rec["objects"] if rec else [])]
        truth.append({"image": name, "objects": objects})
    assert any(t["objects"] for t in truth) and any(not t["objects"] for t in truth)
    return truth


def write_coco(base: Path, truth: list[dict], crowd: bool = True) -> Path:
    """COCO: pixel [x, y, w, h]; the first image has no width/height (read from the file);
    with ``crowd`` one extra ``iscrowd`` annotation on the second image."""
    images, annotations = [], []
    for i, t in enumerate(truth):
        entry = {"id": 100 + i, "file_name": t["image"]}
        if i:
            entry.update(width=W, height=H)
        images.append(entry)
        for cls, (x1, y1, x2, y2) in t["objects"]:
            w, h = (x2 - x1) * W, (y2 - y1) * H
            annotations.append({"id": 1000 + len(annotations), "image_id": 100 + i, "category_id": COCO_IDS[cls],
                                "bbox": [x1 * W, y1 * H, w, h], "area": w * h, "iscrowd": 0})
    if crowd:
        annotations.append({"id": 9999, "image_id": 101, "category_id": 3, "bbox": [1, 2, 30, 20], "area": 600, "iscrowd": 1})
    categories = [{"id": i, "name": name, "supercategory": "thing"} for name, i in COCO_IDS.items()]
    path = base / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_yolo(base: Path, truth: list[dict]) -> tuple[Path, Path]:
    """YOLO: ``labels/<stem>.txt`` lines 'class_id cx cy w h' (normalized); no file for an
    image without objects; ``classes.txt``. Returns ``(labels, classes)``."""
    labels = base / "labels"
    labels.mkdir()
    names = sorted(COCO_IDS)
    (base / "classes.txt").write_text("\n".join(names) + "\n")
    for t in truth:
        if t["objects"]:
            lines = [f"{names.index(c)} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"
                     for c, (x1, y1, x2, y2) in t["objects"]]
            (labels / Path(t["image"]).with_suffix(".txt")).write_text("\n".join(lines) + "\n")
    return labels, base / "classes.txt"


def dota_class(cls: str) -> str:
    return cls.replace(" ", "-")  # DOTA's names have no spaces ('storage-tank')


def write_dota(base: Path, truth: list[dict]) -> Path:
    """DOTA v1.0: header lines, then per object a diamond through the midpoints of its box's
    edges (in pixels; its axis-aligned box is the box), class, difficult (every other object)."""
    labels = base / "labelTxt"
    labels.mkdir()
    for t in truth:
        lines = ["imagesource:GoogleEarth", "gsd:0.146343590398"]
        for k, (cls, (x1, y1, x2, y2)) in enumerate(t["objects"]):
            x1, x2, y1, y2 = x1 * W, x2 * W, y1 * H, y2 * H
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            corners = [cx, y1, x2, cy, cx, y2, x1, cy]
            lines.append(" ".join(f"{v:.3f}" for v in corners) + f" {dota_class(cls)} {k % 2}")
        (labels / Path(t["image"]).with_suffix(".txt")).write_text("\n".join(lines) + "\n")
    return labels


def write_hf(base: Path, truth: list[dict], images: Path) -> Path:
    """A ``save_to_disk`` dataset: ``image`` (Image) and ``objects`` (``bbox`` pixel
    [x, y, w, h], ``category`` ClassLabel), the Hub's detection layout; images from ``images``."""
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, List, Value

    names = sorted(COCO_IDS)
    features = Features({
        "image": ImageFeature(),
        "objects": {"bbox": List(List(Value("float32"), length=4)), "category": List(ClassLabel(names=names))},
    })
    rows = {"image": [], "objects": []}
    for t in truth:
        rows["image"].append(str(images / t["image"]))
        rows["objects"].append({
            "bbox": [[x1 * W, y1 * H, (x2 - x1) * W, (y2 - y1) * H] for _, (x1, y1, x2, y2) in t["objects"]],
            "category": [names.index(c) for c, _ in t["objects"]],
        })
    path = base / "hf_dataset"
    Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    return path
