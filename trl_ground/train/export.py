"""Final outputs: adapters (or the full model) in ``final/`` and a merged 16-bit model in
``final_merged/``. Every directory is written next to its target and renamed into place,
so it is complete or absent; a save that fails (a full disk: one error naming the file)
removes its partial copy."""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from .run_errors import naming_disk_full

__all__ = ["CheckpointStaging", "atomic_directory", "merge_adapters", "replace_directory", "save_final"]


def _fresh_directory(parent: Path, prefix: str) -> Path:
    """A new empty directory ``parent/prefix<random>`` with the usual permissions
    (``0o777`` less the umask; ``tempfile.mkdtemp`` would make it private, ``0o700``)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


@contextmanager
def atomic_directory(target):
    """Yield a temporary directory beside ``target`` (with the permissions a plain ``mkdir``
    gives); on success it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_directory(target.parent, f".{target.name}.")
    try:
        with naming_disk_full(tmp):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, target)


def replace_directory(source: Path, target: Path) -> None:
    """Move the complete directory ``source`` to ``target``, replacing what was there."""
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


class CheckpointStaging:
    """Makes the Trainer's ``checkpoint-N`` directories complete or absent.

    While :meth:`staged` is open, :meth:`redirect` maps the run directory to a staging
    directory beside it (the trainer's ``_get_output_dir`` calls it), so the Trainer writes
    ``{run_dir}/.staging/checkpoint-N``; on exit the main process renames it to
    ``{run_dir}/checkpoint-N``, which ``resume_from_checkpoint`` then sees whole or not at all.
    """

    STAGING = ".staging"

    def __init__(self):
        self.active = False

    def redirect(self, run_dir: str) -> str:
        return os.path.join(run_dir, self.STAGING) if self.active else run_dir

    @contextmanager
    def staged(self, run_dir: str, name: str, is_main: bool, barrier):
        """Around one checkpoint save: yields the staged checkpoint's path; ``barrier()``
        synchronizes the processes before the main one moves the result into place. A save
        that fails (e.g. the disk is full: :class:`~trl_ground.train.run_errors.NoSpaceError`,
        naming the file) leaves no partial checkpoint behind."""
        staging = os.path.join(run_dir, self.STAGING)
        self.active = True
        try:
            with naming_disk_full(os.path.join(staging, name)):
                yield os.path.join(staging, name)
        except BaseException:
            if is_main:
                shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
            raise
        finally:
            self.active = False
        barrier()
        if is_main:
            target = Path(run_dir) / name
            if target.exists():
                shutil.rmtree(target)
            os.replace(os.path.join(staging, name), target)
            shutil.rmtree(staging, ignore_errors=True)
        barrier()


def save_final(trainer, processor, output_dir) -> Path:
    """``{output_dir}/final``: LoRA adapters + processor (loadable with
    ``PeftModel.from_pretrained`` on the base), or the full model + processor.

    Every process calls this (a sharded model is gathered inside ``save_model``); only the
    main process writes, into a staging directory that is then renamed into place."""
    target = Path(output_dir) / "final"
    staging = Path(output_dir) / ".final.staging"
    main = trainer.args.should_save
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    trainer.accelerator.wait_for_everyone()
    try:
        with naming_disk_full(staging):
            trainer.save_model(str(staging))
            trainer.accelerator.wait_for_everyone()
            if main:
                processor.save_pretrained(str(staging))
    except BaseException:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if main:
        replace_directory(staging, target)
    trainer.accelerator.wait_for_everyone()
    return target


def merge_adapters(base_model: str, adapter_dir, out_dir, dtype=torch.bfloat16, write_card=None) -> Path:
    """Merge LoRA adapters into a freshly loaded 16-bit base and save it with the processor
    (and, with ``write_card(folder)``, its model card: e.g. the trainer's ``write_model_card``).

    The base is always reloaded in ``dtype`` (never merged into 4-bit weights, which would
    round the update away). Runs on the CPU so it fits beside a training job.
    """
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base = AutoModelForImageTextToText.from_pretrained(base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    with atomic_directory(out_dir) as tmp:
        merged.save_pretrained(str(tmp))
        AutoProcessor.from_pretrained(str(adapter_dir)).save_pretrained(str(tmp))
        if write_card is not None:
            write_card(tmp)
    return Path(out_dir)
