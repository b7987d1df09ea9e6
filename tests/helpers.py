"""Helpers shared by the test modules: plain functions and constants, not fixtures (those are
in conftest.py). Test modules import from here, never from one another (checked by
tests/test_layout_of_tests.py). Heavy imports (torch, TRL) stay inside the functions, so that
importing this module costs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_ASSETS = REPO.parent / "shared" / "assets"
REAL_PROCESSOR = SHARED_ASSETS / "qwen3vl-processor"
REAL_CONFIGS = SHARED_ASSETS / "qwen3vl-configs"
DEMO = str(REPO / "configs" / "demo.yaml")


# --- command lines and their errors -------------------------------------------------------

# A short run of the tiny model: 1 sampled answer of at most 8 tokens per prompt.
QUICK_RUN = ("--num-generations", "1", "--max-completion-length", "8", "--logging-steps", "1")


def tiny_run_argv(model_dir, data, out, *extra) -> list[str]:
    """``trl-ground-sft`` arguments: the demo config on ``model_dir`` and ``data`` (the
    ``synthetic_data`` fixture), writing to ``out``; ``extra`` flags last."""
    train, test, root = data
    return ["--config", str(REPO / "configs/demo.yaml"), "--model", str(model_dir), "--build-tiny-model", "false",
            "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0",
            "--output-dir", str(out), "--overwrite-output-dir", "false", *QUICK_RUN, *extra]


def one_line_error(capsys, main, argv, *needles):
    """``main(argv)`` exits 2 with exactly one ``error:`` line on stderr holding ``needles``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- the trainer on the tiny model --------------------------------------------------------

GROUNDING_LOG_KEYS = {
    "loss", "lm_loss", "iou_loss", "fp_loss", "fn_loss", "f1", "grounding_cost", "grounding_cost_std",
    "grounding_cost_group_std", "sampled_tokens", "sample_seconds",
}


def trainer_argv(tiny_model_dir, synthetic_data, out, *extra):
    """``trl-ground-sft`` arguments for the trainer tests: the demo config, LoRA on the tiny
    model and the ``synthetic_data`` fixture, writing to ``out``; ``extra`` flags last."""
    train, test, root = synthetic_data
    return [
        "--config", str(REPO / "configs/demo.yaml"),
        # the demo config fine-tunes every weight of its random tiny model; these tests train LoRA
        "--use-lora", "true", "--lora-r", "8", "--lora-alpha", "16", "--finetune-attention-modules", "true", "--lr", "0.003",
        "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0",
        "--output-dir", str(out), *extra,
    ]


def make_trainer(tiny_model_dir, synthetic_data, out, *extra):
    from trl_ground.config import parse_args
    from trl_ground.train.job import build_trainer

    return build_trainer(*parse_args(trainer_argv(tiny_model_dir, synthetic_data, out, *extra)))


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def grads_after_loss(trainer, batch, seed=0):
    import torch

    model = trainer.model
    model.zero_grad()
    torch.manual_seed(seed)
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def force_answers(monkeypatch, texts_of):
    """Replace the sampled answers with ``texts_of(sampled texts)``, tokens included (each
    ended by ``<|im_end|>``), so that their costs and box credit are known whatever the
    random model writes."""
    import torch

    from trl_ground.sampling.batches import Samples
    from trl_ground.train import trainer as trainer_module

    real = trainer_module.GroundingSFTTrainer._sample

    def patched(self, model, prompts, tokenizer, **kw):
        samples = real(self, model, prompts, tokenizer, **kw)
        texts = texts_of(samples.texts)
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        rows = [tokenizer(t, add_special_tokens=False).input_ids + [end] for t in texts]
        ids = torch.full((len(rows), max(map(len, rows))), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        device = samples.completion_ids.device
        return Samples(samples.prompts, ids.to(device), mask.to(device), torch.zeros(len(rows), dtype=torch.bool, device=device), texts)

    monkeypatch.setattr(trainer_module.GroundingSFTTrainer, "_sample", patched)


SPAM = "[" + ", ".join(['{"bbox_2d": [0, 0, 10, 10]}'] * 6) + "]"


def force_distinct_costs(monkeypatch):
    """Replace every other sampled answer with one full of false positives, so costs (and
    advantages) differ whatever the random model writes."""
    force_answers(monkeypatch, lambda texts: [SPAM if i % 2 else t for i, t in enumerate(texts)])


def perturb_adapters(model, seed=0):
    """LoRA B starts at zero (merging would change nothing): give every adapter a real delta."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)


# --- a crowded image (tiling) ---------------------------------------------------------------

def crowded_image(root, width=1200, height=800, n_boxes=40, box_px=24, name="big.png", cls="ship"):
    """Write ``root/name`` (``n_boxes`` filled squares of ``box_px`` px on a grid, each its own
    colour) and ``root/train.json`` with its one record. Returns ``(train_json, boxes (N, 4)
    xyxy in [0, 1])``."""
    from PIL import ImageDraw

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


# --- COCO / YOLO / DOTA / Hugging Face sources of one ground truth (converters) ---------------
# The ground truth is the synthetic generator's, on images padded from 128x128 to 160x128
# (wider than tall, so that a width / height mix-up cannot pass). One extra image has no
# objects.

W, H = 160, 128
COCO_IDS = {"ship": 3, "airplane": 7, "vehicle": 1, "storage tank": 12}  # not contiguous, not sorted


def make_truth(base: Path, n: int = 8, seed: int = 3) -> list[dict]:
    """Write ``base/images/*.png``; return ``[{"image", "objects": [(class, [x1, y1, x2, y2])]}]``
    with boxes xyxy normalized to [0, 1] of the 160x128 images."""
    from trl_ground.data.synthetic import make_synthetic_dataset

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
    from datasets import ClassLabel, Dataset, Features, List, Value
    from datasets import Image as ImageFeature

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
