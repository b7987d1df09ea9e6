"""Pictures: boxes drawn on images, and the training curves of a run."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["answer_note", "draw_boxes", "line_width", "plot_training"]

GT_COLOUR = (40, 200, 60)
PRED_COLOUR = (230, 40, 40)
_BAND = (0, 0, 0)  # the legend band above the image
_TEXT = (255, 255, 255)


def _font(size: int):
    """PIL's default font at ``size`` pixels (a scalable font since Pillow 10.1), else the small bitmap one."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # an older Pillow, or one built without FreeType
        return ImageFont.load_default()


def _dashed_rectangle(draw, xy, colour, width: int, dash: int = 8) -> None:
    """A rectangle outline of ``dash``-pixel dashes (centred on ``xy``'s edges): what lies
    under it stays visible in the gaps."""
    x1, y1, x2, y2 = xy
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, int(length) + 1, 2 * dash):
            end = min(start + dash, length)
            t0, t1 = start / max(length, 1), end / max(length, 1)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)], fill=colour, width=width)


def _grown(xy, by: float) -> list[float]:
    x1, y1, x2, y2 = xy
    return [x1 - by, y1 - by, x2 + by, y2 + by]


def line_width(width: int, height: int) -> int:
    """Outline width in pixels for a picture of ``width`` x ``height``: 2 px up to ~800 px,
    then growing with the longer side (3 px at 1024, 6 at 2048), so that outlines stay
    visible without hiding small objects."""
    return max(2, round(max(width, height) / 340))


def answer_note(n_boxes: int, valid_json: bool = True, truncated: bool = False, num_tokens: int | None = None) -> str | None:
    """What a picture says about an answer besides its boxes: a truncated or unparseable
    answer is marked as such (its missing boxes were never written, not predicted absent);
    an empty, well-formed answer is "no boxes predicted"; None for an answer with boxes."""
    if truncated:
        limit = f" ({num_tokens} tokens)" if num_tokens else ""
        recovered = f"{n_boxes} complete box{'es' if n_boxes != 1 else ''} recovered" if n_boxes else "no complete box"
        return f"answer cut at the token limit{limit}: {recovered}"
    if not valid_json:
        return f"answer not valid JSON: {n_boxes} box{'es' if n_boxes != 1 else ''} recovered" if n_boxes else "answer not parseable: no box"
    return None if n_boxes else "no boxes predicted"


def _tag_corner(draw, xy, margin: float, text: str, font, top: int) -> tuple[float, float]:
    """Where a box's tag goes: above its outline (``margin`` outside the box), or below it
    when there is no room above (under ``top``, the legend band); never over the box."""
    left, t, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = xy[0] - margin
    y = xy[1] - margin - (bottom - t) - 3
    return (x, y) if y >= top else (x, xy[3] + margin + 3)


def _label(draw, xy, text: str, colour, font) -> None:
    """``text`` on a filled box of ``colour`` with its top-left corner at ``xy``."""
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=colour)
    draw.text(xy, text, fill=_TEXT, font=font)


def draw_boxes(image_path, out_path, pred=(), scores=(), gt=(), label: str | None = None, note: str | None = None) -> Path:
    """Draw ground truth and predictions on an image, with a legend above it.

    Outlines go around the boxes, never over them, so that small objects stay visible, and
    their width follows the picture's size (:func:`line_width`). Ground truth: solid green,
    just outside its box. Predictions: dashed red, outside that (a prediction that matches a
    ground-truth box frames its outline), each with its confidence on a red tag above it. ``note``
    (see :func:`answer_note`: a truncated or unparseable answer) is written in red under the
    legend; without one, an answer with no box gets "no boxes predicted".

    Args:
        image_path: the image.
        out_path: the PNG to write.
        pred: ``(N, 4)`` predicted boxes, xyxy in [0, 1].
        scores: ``(N,)`` confidences in [0, 1] (may be shorter than ``pred``).
        gt: ``(M, 4)`` ground-truth boxes, xyxy in [0, 1].
        label: the queried class (shown in the legend).
        note: what to say about the answer (default: "no boxes predicted" when ``pred`` is empty).
    Returns:
        ``out_path`` as a ``Path``.
    """
    from PIL import Image, ImageDraw

    from ..data.images import open_rgb

    img = open_rgb(image_path)
    # small images are upscaled so that the drawing stays legible
    scale = max(1, 512 // max(img.size))
    img = img.resize((img.width * scale, img.height * scale))
    w, h = img.size
    font = _font(max(12, w // 32))
    band = font.size + 12 if hasattr(font, "size") else 24
    canvas = Image.new("RGB", (w, h + band), _BAND)
    canvas.paste(img, (0, band))
    draw = ImageDraw.Draw(canvas)
    line = line_width(w, h)

    def pixels(box):
        return [box[0] * w, band + box[1] * h, box[2] * w, band + box[3] * h]

    for box in gt:  # PIL draws a rectangle's width inwards: grown by it, the outline lies just outside the box
        draw.rectangle(_grown(pixels(box), line), outline=GT_COLOUR, width=line)
    for box in pred:
        _dashed_rectangle(draw, _grown(pixels(box), 1.5 * line), PRED_COLOUR, line)
    for i, box in enumerate(pred[: len(scores)]):  # tags last, so that no outline covers them
        _label(draw, _tag_corner(draw, pixels(box), 2.5 * line, f"{scores[i]:.2f}", font, band), f"{scores[i]:.2f}", PRED_COLOUR, font)
    x = 6
    for text, colour in ((f"query: {label}" if label else "", None), (f"ground truth ({len(gt)})", GT_COLOUR),
                         (f"prediction ({len(pred)})", PRED_COLOUR)):
        if not text:
            continue
        if colour is None:
            draw.text((x, 6), text, fill=_TEXT, font=font)
        else:
            draw.rectangle([x, 8, x + 14, band - 8], outline=colour, width=3)
            x += 20
            draw.text((x, 6), text, fill=colour, font=font)
        x = draw.textbbox((x, 6), text, font=font)[2] + 16
    if note is None and not len(pred):
        note = "no boxes predicted"
    if note:
        _label(draw, (8, band + h - band + 2), note, PRED_COLOUR, font)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


# (logged key, what the y-axis shows) per panel of training.png
PANELS = (
    ("lm_loss", "LM loss (NLL per answer token)"),
    ("iou_loss", "iou_loss (1 - mean IoU of matches)"),
    ("fp_loss", "false positives per answer"),
    ("fn_loss", "false negatives per answer"),
    ("f1", "F1@0.5 per answer"),
)
LOSS_KEYS = tuple(key for key, _ in PANELS)


def _trainer_state(run_dir: Path) -> Path:
    direct = run_dir / "trainer_state.json"
    if direct.exists():
        return direct
    checkpoints = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]))
    if not checkpoints:
        raise ValueError(f"{run_dir}: no trainer_state.json (in the run or its checkpoints)")
    return checkpoints[-1]


def plot_training(run_dir, out_path=None) -> Path:
    """Plot the logged loss components (``lm_loss``, ``iou_loss``, ``fp_loss``, ``fn_loss``,
    F1) of a run against the optimizer step: train (line) and eval (markers); the F1 panel
    also shows F1 on prompts with boxes (``f1_positive``) when it was logged. Axes are
    labelled; the legend sits below the panels. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    history = json.loads(_trainer_state(run_dir).read_text())["log_history"]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
    curves = {}  # legend label -> a line drawn with that label
    for ax, (key, ylabel) in zip(axes, PANELS):
        series = [("", "-", "train"), ("eval_", "o--", "eval")]
        if key == "f1":
            series += [("", "-", "train, prompts with boxes"), ("eval_", "s:", "eval, prompts with boxes")]
        for i, (prefix, style, name) in enumerate(series):
            logged = prefix + key + ("_positive" if i >= 2 else "")
            points = [(r["step"], r[logged]) for r in history if logged in r]
            if points:
                (line,) = ax.plot(*zip(*points), style, color=f"C{i}", label=name)
                curves.setdefault(name, line)
        ax.set_title(key)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.legend(list(curves.values()), list(curves), loc="lower center", ncol=max(len(curves), 1), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out = Path(out_path) if out_path else run_dir / "training.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
