"""Where the boxes of an answer are, in characters: what box-level credit needs to give each
box's tokens that box's advantage.

An answer in Qwen3-VL's format is a JSON list of objects, ``[{"bbox_2d": [...], ...}, ...]``.
:func:`answer_layout` scans it once (linear time, strings and escapes respected) and returns
the character span of each complete top-level object and of the list's closing bracket.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AnswerLayout", "answer_layout"]


@dataclass(frozen=True)
class AnswerLayout:
    """Character positions in an answer text.

    Attributes:
        open_end: index just after the list's opening ``[``.
        objects: ``(start, end)`` of each complete top-level ``{...}`` in order (end exclusive).
        close: index of the ``]`` that closes the list, or None (the answer was cut short).
    """

    open_end: int
    objects: tuple[tuple[int, int], ...]
    close: int | None


def answer_layout(text: str, max_objects: int = 1000) -> AnswerLayout | None:
    """Scan ``text`` for its top-level JSON list of objects; None when it has none (no ``[``
    followed by ``{`` or ``]``) or when the list holds something other than objects.

    Args:
        text: the answer (any string; a fenced ```json block works, the fence is skipped).
        max_objects: stop after this many objects (the parser keeps as many boxes).
    """
    if not isinstance(text, str):
        return None
    start = _list_start(text)
    if start is None:
        return None
    objects: list[tuple[int, int]] = []
    depth, in_string, escaped, obj_start = 1, False, False, -1
    for i in range(start + 1, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            if depth == 1:
                return None  # a string directly in the list: not a list of objects
            in_string = True
        elif ch in "[{":
            if depth == 1:
                if ch == "[":
                    return None
                obj_start = i
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 1 and ch == "}":
                objects.append((obj_start, i + 1))
                if len(objects) >= max_objects:
                    return AnswerLayout(start + 1, tuple(objects), None)
            elif depth == 0:
                return AnswerLayout(start + 1, tuple(objects), i)
            elif depth < 0:
                return None
        elif depth == 1 and not ch.isspace() and ch != ",":
            return None  # a number or literal directly in the list
    return AnswerLayout(start + 1, tuple(objects), None)


def _list_start(text: str) -> int | None:
    """Index of the first ``[`` whose next non-space character is ``{`` or ``]``."""
    pos = text.find("[")
    while pos != -1:
        j = pos + 1
        while j < len(text) and text[j].isspace():
            j += 1
        if j < len(text) and text[j] in "{]":
            return pos
        if j >= len(text):
            return pos  # cut right after the bracket
        pos = text.find("[", pos + 1)
    return None
