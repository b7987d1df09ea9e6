"""A crowded synthetic image for the tiling tests: a grid of small coloured boxes."""

import json

import numpy as np
from PIL import Image, ImageDraw


def crowded_image(root, width=1200, height=800, n_boxes=40, box_px=24, name="big.png", cls="ship"):
    """Write ``root/name`` (``n_boxes`` filled squares of ``box_px`` px on a grid, each its own
    colour) and ``root/train.json`` with its one record. Returns ``(train_json, boxes (N, 4)
    xyxy in [0, 1])``."""
    image = Image.new("RGB", (width, height), (30, 60, 90))
    draw = ImageDraw.Draw(image)
    cols = int(np.ceil(np.sqrt(n_boxes * width / height)))
    step_x, step_y = width / cols, height / int(np.ceil(n_boxes / cols))
    boxes = []
    for i in range(n_boxes):
        x0, y0 = int((i % cols) * step_x + 3), int((i // cols) * step_y + 3)
        draw.rectangle([x0, y0, x0 + box_px - 1, y0 + box_px - 1], fill=((37 * i) % 256, (91 * i) % 256, 200))
        boxes.append([x0 / width, y0 / height, (x0 + box_px) / width, (y0 + box_px) / height])
    image.save(root / name)
    objects = [{"class": cls, "bbox_aabb": b, "obj_id": i} for i, b in enumerate(boxes)]
    train = root / "train.json"
    train.write_text(json.dumps([{"image": name, "objects": objects}]))
    return train, np.array(boxes)
