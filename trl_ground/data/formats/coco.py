"""COCO detection JSON -> records.

COCO's ``bbox`` is ``[x, y, w, h]`` in pixels of the image, ``(x, y)`` its top-left corner;
each image's ``width`` / ``height`` come from its ``images`` entry (read from the image file
when absent). Categories are named by ``categories[].name``. Images without annotations are
kept, with no objects. Crowd regions (``iscrowd: 1``) are dropped unless ``keep_crowd`` (then
the object carries ``"iscrowd": true``). ``obj_id`` is the annotation id.
"""

from __future__ import annotations

from pathlib import Path

from ..json_files import read_json
from .base import BadAnnotation, ConversionSummary, check_size, convert_each, finite_numbers, image_size, pixel_box, record

__all__ = ["from_coco", "read_coco"]


def read_coco(path) -> dict:
    """The COCO file as a dict with ``images``, ``annotations`` and ``categories`` lists."""
    path = Path(path)
    data = read_json(path, "COCO file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories', got a {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: '{key}' must be a list")
    if not isinstance(data.get("annotations", []), list):
        raise ValueError(f"{path}: 'annotations' must be a list")
    return data


def _categories(data: dict, path: Path) -> dict:
    names = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str) or not cat["name"].strip():
            raise ValueError(f"{path}: categories[{i}] needs an 'id' and a non-empty 'name', got {cat!r}")
        if cat["id"] in names:
            raise ValueError(f"{path}: categories[{i}]: duplicate category id {cat['id']!r}")
        names[cat["id"]] = cat["name"].strip()
    return names


def _images(data: dict, path: Path) -> list[dict]:
    seen = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise ValueError(f"{path}: images[{i}] needs an 'id' and a 'file_name', got {img!r}")
        if img["id"] in seen:
            raise ValueError(f"{path}: images[{i}]: duplicate image id {img['id']!r}")
        seen.add(img["id"])
    return data["images"]


def from_coco(annotations, img_root, keep_crowd: bool = False, on_bad_record: str = "error") -> tuple[list[dict], ConversionSummary]:
    """Convert a COCO detection file.

    Args:
        annotations: the COCO JSON (``images``, ``annotations``, ``categories``).
        img_root: directory that the images' ``file_name`` values are relative to.
        keep_crowd: keep ``iscrowd`` annotations (marked ``"iscrowd": true``) instead of dropping them.
        on_bad_record: ``"error"`` (raise at the first malformed annotation) or ``"skip"`` (skip its image).
    Returns:
        ``(records, summary)``: one record per image, in the file's order; ``bbox_aabb`` xyxy in [0, 1].
    Raises:
        ValueError naming the file and the annotation id (or image id).
    """
    path = Path(annotations)
    root = Path(img_root)
    if not root.is_dir():
        raise ValueError(f"image root {img_root} is not a directory")
    data = read_coco(path)
    names = _categories(data, path)
    images = _images(data, path)
    summary = ConversionSummary("coco", str(path), str(root))
    by_image: dict = {img["id"]: [] for img in images}
    for i, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            bad = f"{path}: annotations[{i}]: expected an object, got {ann!r}"
        elif not _known(ann.get("image_id"), by_image):
            bad = f"{path}: annotation id {ann.get('id', f'#{i}')}: image_id {ann.get('image_id')!r} is not in 'images'"
        else:
            by_image[ann["image_id"]].append((ann.get("id", f"#{i}"), ann))
            continue
        if on_bad_record == "error":
            raise BadAnnotation(bad)
        summary.skip("annotation of no known image", bad)

    def build(img: dict) -> dict:
        where = f"{path}: image id {img['id']} ({img['file_name']!r})"
        file = root / img["file_name"]
        if not file.is_file():
            raise BadAnnotation(f"{where}: image file not found under {root}")
        width, height = img.get("width"), img.get("height")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            width, height = image_size(file, where)
        objects = []
        for ann_id, ann in by_image[img["id"]]:
            obj = _object(ann, ann_id, names, width, height, keep_crowd, summary, f"{path}: annotation id {ann_id}")
            if obj is not None:
                objects.append(obj)
        return record(img["file_name"], objects)

    return convert_each(images, build, summary, on_bad_record), summary


def _object(ann: dict, ann_id, names: dict, width: float, height: float, keep_crowd: bool, summary: ConversionSummary, where: str):
    if not _known(ann.get("category_id"), names):
        raise BadAnnotation(f"{where}: unknown category id {ann.get('category_id')!r} (not in 'categories')")
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise BadAnnotation(f"{where}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}")
    x, y, w, h = finite_numbers(bbox, where, "bbox")
    check_size(w, h, where)
    crowd = bool(ann.get("iscrowd", 0))
    if crowd and not keep_crowd:
        summary.skip("crowd annotation (keep with --keep-crowd)", where)
        return None
    box = pixel_box(x, y, x + w, y + h, width, height, summary, where)
    if box is None:
        return None
    obj = {"class": names[ann["category_id"]], "bbox_aabb": box, "obj_id": ann_id}
    if crowd:
        obj["iscrowd"] = True
    return obj


def _known(key, table: dict) -> bool:
    """``key in table`` for any JSON value (a list or object is never a key)."""
    return isinstance(key, (int, float, str)) and not isinstance(key, bool) and key in table
