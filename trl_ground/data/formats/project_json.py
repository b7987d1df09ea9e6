"""The project's own JSON as a source (``--from json``): to tile it or re-check it.

The records are validated as training validates them (:func:`trl_ground.data.records.load_records`,
without opening the images: :func:`trl_ground.data.formats.convert` does that next) and passed on
as they are, every field kept.
"""

from __future__ import annotations

from ..json_files import read_json
from ..records import load_records
from .base import ConversionSummary

__all__ = ["from_json"]


def from_json(annotations, img_root, on_bad_record: str = "error") -> tuple[list[dict], ConversionSummary]:
    """The valid records of the JSON list ``annotations`` (images under ``img_root``).

    Returns ``(records, summary)``; bad records raise ``ValueError`` naming the file, record
    and field (``on_bad_record="skip"``: left out and counted).
    """
    records, skipped = load_records(annotations, img_root, on_bad_record=on_bad_record, check_images=False)
    data = read_json(annotations)
    summary = ConversionSummary("json", str(annotations), str(img_root))
    for reason in skipped:
        summary.skip("failed the records' validation", reason)
    dicts = [data[r.index] for r in records]
    for rec in dicts:
        summary.add({"objects": rec.get("objects", [])})
    return dicts, summary
