"""Model text -> predicted boxes (normalized xyxy in [0, 1]) and labels.

Qwen3-VL answers grounding queries with JSON whose coordinates are integers 0..1000
relative to the image: ``[{"bbox_2d": [x1, y1, x2, y2], "label": "ship"}]``. This module
turns any answer, well-formed or not, into what can be recovered from it. It never raises
on the text: garbage parses to no boxes.

Recognized, in order of preference:

1. the whole answer (optionally inside a fenced ```json block) as JSON: a list of objects
   with ``bbox_2d`` (or ``bbox`` / ``box``), a single such object, a list of 4 numbers, or a
   list of such lists;
2. otherwise (truncated or broken JSON) every complete ``{...}`` object that holds a box;
3. the older Qwen form ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` (label from a preceding
   ``<|object_ref_start|>label<|object_ref_end|>``, a label without ``<``);
4. bare ``[x1, y1, x2, y2]`` lists anywhere in the text.

The coordinate space of the numbers is an argument, never a guess: ``"qwen"`` (0..1000,
the default), ``"norm"`` (floats 0..1) or ``"pixel"`` (needs ``image_size=(width, height)``).

Degenerate output is bounded, so that a model that loops inside a training run costs time
linear in its length and never an exception: JSON nested deeper than the interpreter's
recursion limit is not valid JSON here; step 2 decodes only objects that open with ``{``
and name a box key before the next brace, each at most :data:`MAX_OBJECT_CHARS` long, and
gives up after :data:`MAX_OBJECT_ATTEMPTS` of them; an answer keeps at most
:data:`MAX_BOXES` boxes (its first ones), which also bounds the memory of batched scoring.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import chain, islice

import numpy as np

__all__ = ["COORD_SPACES", "MAX_BOXES", "ParsedAnswer", "parse_boxes", "to_qwen_answer"]

COORD_SPACES = ("qwen", "norm", "pixel")
# Real answers hold tens of boxes (~25 tokens each); 1,000 boxes is ~25,000 generated tokens.
MAX_BOXES = 1000
# A box object such as {"bbox_2d": [100, 200, 300, 400], "label": "ship"} is ~50 characters.
MAX_OBJECT_CHARS = 1024
# Candidate objects decoded in step 2 (each costs at most MAX_OBJECT_CHARS of decoding).
MAX_OBJECT_ATTEMPTS = 4 * MAX_BOXES
_BOX_KEYS = ("bbox_2d", "bbox", "box")
# Errors the json module raises on a str: malformed text (JSONDecodeError, and a ValueError
# for an integer of more than sys.get_int_max_str_digits() digits) and nesting deeper than
# the recursion limit (RecursionError).
_JSON_ERRORS = (ValueError, RecursionError)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
# The start of a candidate box object: a "{" followed by a box key before any other brace.
# The lazy scan stops at the next brace, so each "{" scans its own stretch: linear overall.
_OBJECT_START = re.compile(r'\{(?=[^{}]*?"(?:' + "|".join(_BOX_KEYS) + ')")')
# Possessive quantifiers (``*+``, ``++``, ``?+``): a number is never given back digit by
# digit when what follows fails (no other split of it could match), which keeps a failed
# attempt on a long run of digits linear instead of quadratic.
_NUM = r"\s*+(-?\d++(?:\.\d++)?+(?:[eE][-+]?\d++)?+)\s*+"
# Starts with the literal "<|" so that the search skips to the next "<"; the label stops at
# the next "<" (a lazy ".*?" would rescan the rest of the text from every
# <|object_ref_start|>: quadratic).
_OLD_QWEN_BOX = re.compile(
    r"<\|(?:object_ref_start\|>(?P<label>[^<]*+)<\|object_ref_end\|>\s*+<\|)?"
    r"box_start\|>\s*+\(" + _NUM + "," + _NUM + r"\)\s*+,\s*+\(" + _NUM + "," + _NUM + r"\)\s*+<\|box_end\|>"
)
_BARE_LIST = re.compile(r"\[" + _NUM + "," + _NUM + "," + _NUM + "," + _NUM + r"\]")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ParsedAnswer:
    """What was recovered from one answer.

    Attributes:
        boxes: ``ndarray[N, 4]`` float64, xyxy normalized to [0, 1] (clipped),
            ``N <= MAX_BOXES``.
        labels: ``N`` labels, ``None`` where the answer gave none.
        valid_json: the whole answer (after removing a code fence) is one JSON value in a
            recognized grounding shape; ``[]`` counts as valid.
        truncated: the answer is JSON that stops before its end (cut by a token limit).
    """

    boxes: np.ndarray
    labels: tuple
    valid_json: bool
    truncated: bool

    def __len__(self) -> int:
        return len(self.boxes)


def _box_from(value) -> list | None:
    """A list of exactly 4 numbers (not bools), else None. Finiteness is checked later,
    vectorized, by the caller."""
    if type(value) is list and len(value) == 4:
        for v in value:
            t = type(v)
            if t is not int and t is not float:
                return None
        return value
    return None


_NUMBER_TYPES = frozenset((int, float))
_LABEL_TYPES = frozenset((str, type(None)))
_SCALAR_LABEL_TYPES = frozenset((int, float, bool))


def _label_from(value) -> str | None:
    """A label: a string as is, a number or bool as its text, anything else (None, a list,
    an object: possibly nested too deep to print) None."""
    if type(value) is str:
        return value
    return str(value) if type(value) in _SCALAR_LABEL_TYPES else None


def _box_from_object(obj: dict):
    for key in _BOX_KEYS:
        box = obj.get(key)
        if box is not None:
            box = _box_from(box)
            if box is not None:
                return box, _label_from(obj.get("label"))
    return None


def _collect_qwen_list(value, boxes: list, labels: list) -> bool:
    """Fast path for the usual answer, a list of objects with a 4-number ``bbox_2d``: type
    checks run over whole columns in C. False (nothing collected) for any other shape."""
    try:
        found = [item["bbox_2d"] for item in value]
    except (TypeError, KeyError):
        return False
    if (
        not found
        or set(map(type, found)) != {list}
        or set(map(len, found)) != {4}
        or not set(map(type, chain.from_iterable(found))) <= _NUMBER_TYPES
    ):
        return False
    found_labels = [item.get("label") for item in value]
    if not set(map(type, found_labels)) <= _LABEL_TYPES:
        found_labels = [_label_from(lab) for lab in found_labels]
    boxes.extend(found)
    labels.extend(found_labels)
    return True


def _collect(value, boxes: list, labels: list) -> bool:
    """Collect boxes from a decoded JSON value (of a list, its first :data:`MAX_BOXES`
    items). Returns False if their shape is unrecognized."""
    if type(value) is list and len(value) > MAX_BOXES:
        value = value[:MAX_BOXES]
    if type(value) is list and _collect_qwen_list(value, boxes, labels):
        return True
    if type(value) is dict:
        value = [value]
    elif type(value) is not list:
        return False
    elif _box_from(value) is not None:
        value = [value]
    ok = True
    for item in value:
        found = _box_from_object(item) if type(item) is dict else (_box_from(item), None)
        if found is None or found[0] is None:
            ok = False
            continue
        boxes.append(found[0])
        labels.append(found[1])
    return ok


def _strip_fence(text: str) -> str:
    if "```" in text:
        m = _FENCE.search(text)
        if m:
            return m.group(1).strip()
    return text.strip()


def _recover_objects(body: str, boxes: list, labels: list) -> None:
    """Decode every complete ``{...}`` holding a box, left to right (truncated lists).

    Only a ``{`` followed by a box key before the next brace is tried, on at most
    :data:`MAX_OBJECT_CHARS` characters, :data:`MAX_OBJECT_ATTEMPTS` times: the time is
    linear in ``len(body)`` whatever the text (the old way, a full decode attempt at every
    ``{``, was quadratic on nested or unclosed objects).
    """
    pos = 0
    for _ in range(MAX_OBJECT_ATTEMPTS):
        m = _OBJECT_START.search(body, pos)
        if m is None:
            return
        start = m.start()
        try:
            obj, length = _DECODER.raw_decode(body[start : start + MAX_OBJECT_CHARS])
        except _JSON_ERRORS:
            pos = start + 1
            continue
        found = _box_from_object(obj) if type(obj) is dict else None
        if found is None:
            pos = start + 1
            continue
        boxes.append(found[0])
        labels.append(found[1])
        if len(boxes) >= MAX_BOXES:
            return
        pos = start + length


def _float_or_inf(v) -> float:
    try:
        return float(v)
    except OverflowError:
        return float("inf")


def raw_to_array(raw: list) -> np.ndarray:
    """4-number lists -> ``ndarray[N, 4]`` float64; an integer too large for a float
    becomes inf (so that the box is dropped as non-finite)."""
    try:
        return np.array(raw, dtype=np.float64).reshape(-1, 4)
    except OverflowError:
        return np.array([[_float_or_inf(v) for v in box] for box in raw], dtype=np.float64).reshape(-1, 4)


def scale_to_unit(arr: np.ndarray, coord_space: str, image_size=None) -> np.ndarray:
    """Coordinates ``(N, 4)`` in ``coord_space`` -> xyxy in [0, 1] (clipped)."""
    if coord_space == "qwen":
        arr = arr / 1000.0
    elif coord_space == "pixel":
        w, h = image_size
        arr = arr / np.array([w, h, w, h], dtype=np.float64)
    return np.minimum(np.maximum(arr, 0.0), 1.0)


def parse_raw(text) -> tuple[list, list, bool, bool]:
    """The text-only half of :func:`parse_boxes` (no numpy): ``(raw_boxes, labels,
    valid_json, truncated)`` with ``raw_boxes`` a list of 4-number lists in the answer's own
    coordinate space, possibly non-finite. Used to parse many answers before one vectorized
    conversion (:func:`rewards.score_answers`)."""
    boxes: list = []
    labels: list = []
    valid_json = truncated = False
    if not isinstance(text, str):
        return boxes, labels, valid_json, truncated
    body = _strip_fence(text)
    try:
        value = json.loads(body)
    except _JSON_ERRORS as err:
        # A decode error at the very end of the text means the JSON was cut short.
        truncated = isinstance(err, json.JSONDecodeError) and body[:1] in ("[", "{") and err.pos >= len(body)
    else:
        valid_json = _collect(value, boxes, labels)
        if not valid_json:
            boxes.clear()
            labels.clear()
    if not valid_json:
        _recover_objects(body, boxes, labels)
        if not boxes:
            for m in islice(_OLD_QWEN_BOX.finditer(text), MAX_BOXES):
                boxes.append([float(m.group(i)) for i in range(2, 6)])
                labels.append(m.group("label").strip() if m.group("label") else None)
        if not boxes:
            for m in islice(_BARE_LIST.finditer(text), MAX_BOXES):
                boxes.append([float(m.group(i)) for i in range(1, 5)])
                labels.append(None)
    return boxes, labels, valid_json, truncated


def check_coord_space(coord_space: str, image_size=None) -> None:
    """Raise ``ValueError`` for an unknown coordinate space or a missing image size."""
    if coord_space not in COORD_SPACES:
        raise ValueError(f"coord_space must be one of {COORD_SPACES}, got {coord_space!r}")
    if coord_space == "pixel":
        if image_size is None or len(image_size) != 2 or min(image_size) <= 0:
            raise ValueError("coord_space='pixel' needs image_size=(width, height) > 0")


def parse_boxes(text, coord_space: str = "qwen", image_size=None) -> ParsedAnswer:
    """Parse a model answer into boxes.

    Args:
        text: the answer (anything; a non-string parses to no boxes).
        coord_space: ``"qwen"`` (integers 0..1000), ``"norm"`` (0..1) or ``"pixel"``.
        image_size: ``(width, height)`` in pixels, only for ``coord_space="pixel"``.
    Returns:
        :class:`ParsedAnswer` with ``boxes (ndarray[N, 4])``, xyxy in [0, 1].
    Raises:
        ValueError only for bad arguments (never for the text).
    """
    check_coord_space(coord_space, image_size)
    raw, labels, valid_json, truncated = parse_raw(text)
    arr = raw_to_array(raw)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        arr = arr[finite]
        labels = [lab for lab, keep in zip(labels, finite) if keep]
    arr = scale_to_unit(arr, coord_space, image_size)
    return ParsedAnswer(boxes=arr, labels=tuple(labels), valid_json=valid_json, truncated=truncated)


def to_qwen_answer(boxes, label: str | None) -> str:
    """The Qwen3-VL JSON answer for ``boxes (N, 4)`` xyxy in [0, 1]: coordinates become
    integers ``round(v * 1000)``. This and :func:`parse_boxes` are the only two places that
    convert between the two spaces."""
    items = []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        coords = [int(round(float(v) * 1000)) for v in box]
        item = {"bbox_2d": coords}
        if label is not None:
            item["label"] = label
        items.append(item)
    return json.dumps(items, ensure_ascii=False)
