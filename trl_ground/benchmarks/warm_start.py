"""The learning benchmark's warm start as files: exported in bf16 as a tar split into parts
small enough to commit (``benchmarks/warm_start/``), unpacked and checked against a run's
settings when a run starts from it (``--warm-from``). Training it is :func:`learning.warm_start`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from trl_ground.config.benchmark import LearningBenchSettings

__all__ = ["WARM_DIR", "export_warm", "reuse_warm", "unpack_warm"]

WARM_DIR = "warm_model"
# What warm starts recorded before their fingerprint held these keys were made with.
LEGACY_FINGERPRINT = {"data_seed": 1234, "val_images": 150, "test_images": 300}


def export_warm(work: Path, out_dir: Path, part_mb: float = 15) -> list[Path]:
    """The warm model in bf16 with its record, as a tar split into parts of at most
    ``part_mb`` MB (``warm_model.tar.part0``, ...) in ``out_dir``: small enough to travel and
    to commit. ``--warm-from`` reads the parts back."""
    import io
    import tarfile

    import torch
    from transformers import AutoModelForImageTextToText

    export = work / "warm_export"
    model = AutoModelForImageTextToText.from_pretrained(work / WARM_DIR, dtype=torch.bfloat16)
    model.save_pretrained(export)
    for f in (work / WARM_DIR).iterdir():
        if not f.name.endswith((".safetensors", ".bin")) and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy(f, export / f.name)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(export, arcname=WARM_DIR)
    data = buffer.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("warm_model.tar.part*"):
        old.unlink()
    size = int(part_mb * 1_000_000)
    parts = []
    for i in range(0, len(data), size):
        part = out_dir / f"warm_model.tar.part{i // size}"
        part.write_bytes(data[i : i + size])
        parts.append(part)
    return parts


def unpack_warm(source: Path, dest: Path) -> Path:
    """``source``: a model directory, or a folder of ``warm_model.tar.part*`` -> a model
    directory holding ``warm_start.json``."""
    import io
    import tarfile

    if (source / "warm_start.json").exists():
        return source
    parts = sorted(source.glob("warm_model.tar.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        raise SystemExit(f"{source}: neither a warm model (warm_start.json) nor warm_model.tar.part* files")
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
        tar.extractall(dest, filter="data")
    return dest / WARM_DIR


def reuse_warm(source: Path, work: Path, s: LearningBenchSettings) -> dict:
    """Copy a warm model (``--warm-from``) into ``work``; its record (its data and model
    settings must be this run's)."""
    model_dir = unpack_warm(source, work / "unpacked")
    row = json.loads((model_dir / "warm_start.json").read_text())
    theirs = {**LEGACY_FINGERPRINT, **row["settings"]}
    differ = {k: (theirs.get(k), v) for k, v in s.warm_fingerprint().items() if theirs.get(k) != v}
    if differ:
        raise SystemExit(f"{source} was trained with other settings (theirs, ours): {differ}")
    if model_dir != work / WARM_DIR:
        shutil.copytree(model_dir, work / WARM_DIR, dirs_exist_ok=True)
    return {**row, "from": str(source)}
