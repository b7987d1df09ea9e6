"""The output directory, prepared before the model loads (:func:`prepare_output_dir`):
the checkpoint to resume from found and checked, another run's outputs refused (or removed
with ``overwrite_output_dir``), the directory created and writable, with room for a checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .resume_check import check_resume_setup
from .run_errors import OutputError, verify_checkpoint

__all__ = ["OutputSizes", "estimate_output_sizes", "prepare_output_dir", "previous_run_outputs", "resolve_resume"]

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What a run writes in its output directory: another run's copies must not mix with this one's.
_RUN_DIRS = ("final", "final_merged")
_RUN_LEFTOVERS = ("trainer_state.json", ".staging", ".final.staging")
# Checkpoint files besides the weights and the optimizer state (scheduler, RNG, trainer
# state, training arguments, the processor's tokenizer files: ~15 MB for Qwen3-VL).
CHECKPOINT_OVERHEAD_BYTES = 64 * 2**20
LORA_BYTES = 4  # PEFT keeps LoRA weights in fp32, whatever the base's dtype
MERGED_BYTES = 2  # final_merged/ is written in bf16


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e9:.2g} GB"


def previous_run_outputs(output_dir) -> list[Path]:
    """The ``checkpoint-N``, ``final`` and ``final_merged`` directories of ``output_dir``."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.is_dir() and (_CHECKPOINT.match(p.name) or p.name in _RUN_DIRS))


def resolve_resume(resume, output_dir) -> str:
    """The checkpoint directory to resume from: ``resume`` itself, or with ``True`` the
    latest ``checkpoint-N`` of ``output_dir``.

    Raises:
        OutputError: with ``True``, when ``output_dir`` holds no checkpoint.
    """
    if resume is not True:
        return str(resume)
    out = Path(output_dir)
    steps = [(int(m.group(1)), p) for p in (out.iterdir() if out.is_dir() else []) if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    if not steps:
        raise OutputError(f"no checkpoint to resume from in {out} (--resume-from-checkpoint true resumes its latest checkpoint-N)")
    return str(max(steps)[1])


def _check_writable(out: Path) -> None:
    """Create ``out`` and write (then remove) a file in it."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output_dir {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"output_dir {out} is not writable: {err.strerror or err}") from err


@dataclass(frozen=True)
class OutputSizes:
    """Estimated bytes of one ``checkpoint-N`` and of ``final/`` plus ``final_merged/``."""

    checkpoint: int
    final: int


def _optimizer_state_bytes(optim, param_bytes: int) -> float:
    """Bytes of optimizer state per trainable parameter."""
    name = str(getattr(optim, "value", optim)).lower()
    if "8bit" in name:
        return 2.0  # two 8-bit moments
    if "adafactor" in name:
        return 0.0  # factored second moment: rows + columns, negligible
    if "sgd" in name or "lion" in name:
        return float(param_bytes)  # one momentum buffer
    return 2.0 * param_bytes  # Adam-type: two moments in the parameter's dtype


def _parameter_counts(model_args) -> tuple[int, int]:
    """``(trainable, total)`` parameters (``total``: the base model's, without LoRA), counted on
    the model built from its ``config.json`` on the meta device (no weights are read): LoRA
    adds ``r * (in + out)`` per targeted linear layer; an ``adapter`` counts the tensors of
    its safetensors files."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForImageTextToText

    from ..model.loading import lora_target_modules

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(model_args.model))
    total = sum(p.numel() for p in model.parameters())
    if not model_args.use_lora:
        return total, total
    adapter_files = sorted(Path(model_args.adapter).glob("*.safetensors")) if model_args.adapter else []
    if adapter_files:
        trainable = 0
        for file in adapter_files:
            with safe_open(str(file), "pt") as tensors:
                trainable += sum(torch.Size(tensors.get_slice(k).get_shape()).numel() for k in tensors.keys())
        return trainable, total
    pattern = re.compile(lora_target_modules(model_args))
    trainable = sum(
        model_args.lora_r * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and pattern.fullmatch(name)
    )
    return trainable, total


def estimate_output_sizes(model_args, config) -> OutputSizes:
    """What one checkpoint and the final models will take on disk, before the model loads.

    With ``P`` trainable and ``N`` total parameters (:func:`_parameter_counts`: exact, from
    ``config.json`` on the meta device), ``b`` the bytes of a trainable parameter (4 for
    LoRA, which PEFT keeps in fp32; 4 for full fine-tuning, whose master weights are fp32) and ``s`` the optimizer's bytes of state per parameter (``2b`` for
    Adam-type optimizers, ``b`` for SGD / Lion, 2 for 8-bit optimizers, 0 for Adafactor)::

        checkpoint = W + s * P + 64 MB      W = b * P (LoRA: the adapters) or b * N (full)
        final      = W + 2 * N with LoRA (final_merged/ in bf16), else W

    The 64 MB cover the scheduler, RNG and trainer state and the processor's files.
    QLoRA's 4-bit base is not part of a checkpoint. E.g. Qwen3-VL-8B, LoRA r16 on the
    language MLP, AdamW: P = 28.3 M -> checkpoint ~0.41 GB, final ~17.6 GB.
    """
    from ..model.loading import weight_dtype

    trainable, total = _parameter_counts(model_args)
    b = LORA_BYTES if model_args.use_lora else torch.finfo(weight_dtype(model_args)).bits // 8
    weights = b * (trainable if model_args.use_lora else total)
    checkpoint = weights + int(_optimizer_state_bytes(config.optim, b) * trainable) + CHECKPOINT_OVERHEAD_BYTES
    return OutputSizes(checkpoint=checkpoint, final=weights + (MERGED_BYTES * total if model_args.use_lora else 0))


def free_bytes(path) -> int:
    """Free bytes on the file system of ``path``."""
    return shutil.disk_usage(path).free


def _tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (tolerant of files removed meanwhile by another process)."""
    files = [path] if path.is_file() else [Path(d) / f for d, _, names in os.walk(path) for f in names]
    total = 0
    for file in files:
        with contextlib.suppress(OSError):
            total += file.stat().st_size
    return total


def _check_room(out: Path, model_args, config, freed: int) -> None:
    """Refuse a run whose first checkpoint cannot fit; warn when the final models may not."""
    try:
        sizes = estimate_output_sizes(model_args, config)
    except (OSError, ValueError, KeyError) as err:  # config.json unreachable, unknown architecture
        logger.warning("free space not checked: cannot size the model %s (%s)", model_args.model, str(err).splitlines()[0])
        return
    free = free_bytes(out) + freed
    if free < sizes.checkpoint:
        raise OutputError(f"not enough space in {out} for one checkpoint: needs ~{_gb(sizes.checkpoint)}, {_gb(free)} free")
    if free < sizes.checkpoint + sizes.final:
        logger.warning(
            "%s has room for a checkpoint (~%s) but perhaps not for final/ and final_merged/ (~%s more); %s free",
            out, _gb(sizes.checkpoint), _gb(sizes.final), _gb(free),
        )


def prepare_output_dir(config, model_args) -> None:
    """Everything about ``config.output_dir`` that can fail, checked before the model loads.

    - ``config.resume_from_checkpoint``: ``True`` becomes the latest ``checkpoint-N`` of
      ``output_dir``; the checkpoint must exist and its files be whole
      (:func:`trl_ground.train.run_errors.verify_checkpoint`), and come from this run's setup
      (LoRA or full, LoRA's settings, the architecture: :mod:`trl_ground.train.resume_check`).
    - A directory holding another run's ``checkpoint-N``, ``final/`` or ``final_merged/`` is
      refused, unless resuming (which wins over ``overwrite_output_dir``, as in Hugging
      Face's scripts), or with ``config.overwrite_output_dir``: then those (and the old
      ``trainer_state.json``) are removed first, so that two runs never mix.
    - The directory is created and must be writable, with room for one checkpoint
      (:func:`estimate_output_sizes`).

    Raises:
        OutputError: one line naming the directory or file and what is wrong.
    """
    out = Path(config.output_dir)
    resume = config.resume_from_checkpoint
    if resume:
        config.resume_from_checkpoint = resolve_resume(resume, out)
        if config.process_index == 0:  # reads every file of the checkpoint: once, not once per GPU
            verify_checkpoint(config.resume_from_checkpoint)
        check_resume_setup(config.resume_from_checkpoint, model_args)
    old = previous_run_outputs(out)
    if old and not resume and not config.overwrite_output_dir:
        raise OutputError(
            f"{out} already holds another run ({', '.join(p.name for p in old)}): "
            "--resume-from-checkpoint true continues it, --overwrite-output-dir true replaces it, or choose another --output-dir"
        )
    _check_writable(out)
    replaced = []
    if old and config.overwrite_output_dir and not resume:
        replaced = old + [out / name for name in _RUN_LEFTOVERS if (out / name).exists()]
    _check_room(out, model_args, config, freed=sum(_tree_bytes(p) for p in replaced))
    if replaced and config.process_index == 0:
        logger.warning("--overwrite-output-dir: removing %s from %s", ", ".join(p.name for p in replaced), out)
        for path in replaced:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
