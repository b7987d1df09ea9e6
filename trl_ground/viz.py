"""Pictures: boxes drawn on images, and the training curves of a run."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["draw_boxes", "plot_training"]

GT_COLOUR = (40, 200, 60)
PRED_COLOUR = (230, 40, 40)


def draw_boxes(image_path, out_path, pred=(), scores=(), gt=(), label: str | None = None) -> Path:
    """Draw ground truth (green) and predictions (red, with confidences) on an image.

    ``pred`` / ``gt``: boxes ``(N, 4)`` xyxy in [0, 1]. Writes a PNG to ``out_path``.
    """
    from PIL import ImageDraw

    from .images import open_rgb

    img = open_rgb(image_path)
    # small images are upscaled so that the drawing stays legible
    scale = max(1, 512 // max(img.size))
    img = img.resize((img.width * scale, img.height * scale))
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for box in gt:
        draw.rectangle([box[0] * w, box[1] * h, box[2] * w, box[3] * h], outline=GT_COLOUR, width=2)
    for i, box in enumerate(pred):
        xy = [box[0] * w, box[1] * h, box[2] * w, box[3] * h]
        draw.rectangle(xy, outline=PRED_COLOUR, width=2)
        if i < len(scores):
            draw.text((xy[0] + 2, max(0, xy[1] - 11)), f"{scores[i]:.2f}", fill=PRED_COLOUR)
    if label:
        draw.text((4, 4), label, fill=(255, 255, 255))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


LOSS_KEYS = ("lm_loss", "iou_loss", "fp_loss", "fn_loss", "f1")


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
    F1, and their eval counterparts) of a run against the step. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    history = json.loads(_trainer_state(run_dir).read_text())["log_history"]
    fig, axes = plt.subplots(1, len(LOSS_KEYS), figsize=(4 * len(LOSS_KEYS), 3.2))
    for ax, key in zip(axes, LOSS_KEYS):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            points = [(r["step"], r[prefix + key]) for r in history if prefix + key in r]
            if points:
                ax.plot(*zip(*points), style, label="train" if not prefix else "eval")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    out = Path(out_path) if out_path else run_dir / "training.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
