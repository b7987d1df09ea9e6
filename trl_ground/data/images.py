"""Images: the check run on every image before training, and the conversion to 8-bit RGB.

**The check** (:func:`check_image`) opens the file and decodes it as cheaply as detects a
broken file: PNGs are verified (every chunk read and its CRC checked: catches truncation and
corruption without inflating the pixels); other formats are decoded (JPEGs at 1/8 scale,
which still reads the whole entropy-coded stream: ``verify()`` does not see a JPEG cut in
half). An image larger than PIL's ``Image.MAX_IMAGE_PIXELS`` (89,478,485 pixels by default,
about 9459 x 9459; set it to raise the limit, or to None to lift it) is refused before
anything is decoded: a decompression bomb would take the memory of the machine.

**The conversion** (:func:`to_rgb`) keeps the information of every PIL mode:

- 16-bit grey (``I;16*``) is scaled from its full range, ``v * 255 / 65535``;
- 32-bit integer (``I``) and float (``F``) grey are scaled from the range the values use:
  [0, 1] (float), [0, 255], [0, 65535], else their own min..max (NaN -> 0);
- images with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour) are
  composited onto white, as Qwen-VL's own preprocessing does;
- everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr`` ...) goes through PIL's
  ``convert("RGB")``.

(PIL's own ``convert("RGB")`` clips 16-bit values at 255: a 16-bit photograph turns white.)
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_ERRORS", "check_image", "image_size", "open_rgb", "pixel_limit", "to_rgb"]


def _pil_errors() -> tuple:
    from PIL import Image

    # What PIL raises on broken, truncated, unknown or oversized files (Pillow's fuzzers
    # treat these as the expected failures).
    return (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)


IMAGE_ERRORS = _pil_errors()


def pixel_limit() -> int | None:
    """The most pixels an image may have: PIL's ``Image.MAX_IMAGE_PIXELS`` (None: no limit)."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def check_image(path) -> tuple[int, int]:
    """Open ``path`` and check that it decodes (see the module docstring).

    Returns:
        ``(width, height)`` in pixels.
    Raises:
        ValueError with the reason (unreadable, unknown format, truncated or corrupt, too
        many pixels); the caller adds the file, record and field.
    """
    from PIL import Image

    limit = pixel_limit()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is checked below
            with Image.open(path) as img:
                width, height = img.size
                too_big = limit is not None and width * height > limit
                if too_big:
                    pass  # nothing decoded
                elif img.format == "PNG":
                    img.verify()
                else:
                    img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))  # JPEG: decode at 1/8 scale
                    img.load()
    except Image.DecompressionBombError as err:
        raise ValueError(f"over the pixel limit of {limit:,} (PIL's Image.MAX_IMAGE_PIXELS; a decompression bomb?): {err}") from None
    except Image.UnidentifiedImageError:
        raise ValueError("not an image PIL can read (unknown format or garbage bytes)") from None
    except IMAGE_ERRORS as err:
        raise ValueError(f"cannot decode the image (truncated or corrupt?): {type(err).__name__}: {err}") from None
    if too_big:
        raise ValueError(
            f"{width} x {height} = {width * height:,} pixels is over the pixel limit of {limit:,} "
            "(PIL's Image.MAX_IMAGE_PIXELS; a decompression bomb?)"
        )
    return width, height


def image_size(path) -> tuple[int, int]:
    """``(width, height)`` in pixels, from the file's header (nothing decoded); raises PIL's
    errors (IMAGE_ERRORS)."""
    from PIL import Image

    with Image.open(Path(path)) as img:
        return img.size


def _grey_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """``(H, W)`` 16/32-bit integer or float grey values -> ``(H, W)`` uint8 (module docstring)."""
    v = values.astype(np.float64)
    if mode.startswith("I;16"):
        return np.round(v * (255.0 / 65535.0)).astype(np.uint8)
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        scaled = v * 255.0
    elif lo >= 0 and hi <= 255:
        scaled = v
    elif lo >= 0 and hi <= 65535:
        scaled = v * (255.0 / 65535.0)
    else:
        scaled = (v - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(v)
    return np.round(np.nan_to_num(scaled, nan=0.0)).clip(0, 255).astype(np.uint8)


def to_rgb(img):
    """An 8-bit RGB copy of the PIL image ``img``, whatever its mode (module docstring)."""
    from PIL import Image

    if img.mode == "RGB":
        return img.copy()
    if img.mode.startswith("I") or img.mode == "F":
        return Image.fromarray(_grey_to_8bit(np.asarray(img), img.mode)).convert("RGB")
    if img.mode in ("P", "PA") and ("transparency" in img.info or img.mode == "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(path):
    """The image at ``path`` as 8-bit RGB (:func:`to_rgb`); raises PIL's errors (IMAGE_ERRORS)."""
    from PIL import Image

    with Image.open(Path(path)) as img:
        img.load()
        return to_rgb(img)
