"""Reading a user's JSON file, with errors that name the file and say what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["read_json"]


def read_json(path, what: str = "file"):
    """The decoded JSON of ``path`` (UTF-8; a byte-order mark is allowed).

    Args:
        path: the file.
        what: how the file is called in messages (``"predictions file"``, ...).
    Raises:
        ValueError, one line naming the file: missing, not UTF-8 (with how to fix it), empty,
        or invalid JSON (line, column, and whether the file looks truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 1]!r}); "
            "JSON must be UTF-8: re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if not text.strip():
        raise ValueError(f"{path}: the {what} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (the file looks truncated)" if err.pos >= len(text.rstrip()) else ""
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}{hint}") from None
