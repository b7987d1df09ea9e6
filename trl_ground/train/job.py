"""The main job: data -> model -> GroundingSFTTrainer -> checkpoints, ``final/``, ``final_merged/``."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import set_seed

from ..data.collator import GroundingCollator
from ..data.dataset import build_dataset
from ..model.loading import load_model, load_processor
from ..model.source import looks_like_local_path
from .export import merge_adapters, save_final
from .interrupt import Interrupted, stop_on_interrupt
from .lengths import warn_if_too_long
from .model_card import run_info
from .output_dir import prepare_output_dir
from .preflight import check_prompt_fits, check_run
from .run_errors import NothingTrainedError, naming_disk_full
from .trainer import GroundingSFTTrainer

__all__ = ["build_trainer", "ensure_demo_assets", "finish_run", "load_data_and_model", "run_sft", "run_training"]

logger = logging.getLogger(__name__)


def ensure_demo_assets(data_args, model_args) -> None:
    """Build what a demo config points at and does not exist yet: the synthetic dataset
    (``data_args.make_synthetic_data`` images at ``train_json``'s folder) and the tiny
    offline Qwen3-VL (``model_args.build_tiny_model`` at ``model_args.model``, when that is a
    local path: a Hub id given to the demo config is downloaded, not replaced by the tiny model)."""
    if data_args.make_synthetic_data and data_args.train_json and not Path(data_args.train_json).exists():
        from ..data.synthetic import make_synthetic_dataset

        out = Path(data_args.train_json).parent
        print(f"building the synthetic dataset ({data_args.make_synthetic_data} images) in {out}", flush=True)
        make_synthetic_dataset(out, n=data_args.make_synthetic_data, seed=data_args.example_seed)
    if model_args.build_tiny_model and looks_like_local_path(model_args.model) and not (Path(model_args.model) / "config.json").exists():
        from ..model.tiny import build_tiny_qwen3vl

        print(f"building the tiny offline Qwen3-VL in {model_args.model}", flush=True)
        build_tiny_qwen3vl(model_args.model)


def load_data_and_model(data_args, model_args, config, with_completion: bool = True):
    """``(train_dataset, eval_dataset or None, processor, model)`` for a training run;
    training examples longer than ``config.max_length`` are named in a warning."""
    if not data_args.img_root or (not data_args.train_json and data_args.train_format in ("json", "coco")):
        raise ValueError("train_json and img_root are required (--train-json, --img-root)")
    train_ds, records = build_dataset(
        data_args.train_json,
        data_args.img_root,
        data_args,
        with_completion=with_completion,
        check_images=data_args.image_check,
        source_format=data_args.train_format,
    )
    classes = sorted({o.cls for r in records for o in r.objects})
    eval_ds = None
    if data_args.eval_json:
        eval_ds, _ = build_dataset(
            data_args.eval_json, data_args.img_root, data_args, classes, with_completion, check_images=data_args.image_check
        )
    processor = load_processor(model_args.model, data_args.max_pixels, data_args.min_pixels)
    check_prompt_fits(processor, train_ds[0], getattr(config, "max_length", None), data_args.max_pixels)
    # training cuts examples at max_length without a word: name them first
    warn_if_too_long(train_ds, processor, data_args, getattr(config, "max_length", None), data_args.train_json or data_args.img_root)
    set_seed(config.seed)  # new LoRA weights are random: the same seed gives the same run
    model = load_model(model_args, gradient_checkpointing=config.gradient_checkpointing)
    return train_ds, eval_ds, processor, model


def build_trainer(data_args, model_args, scoring, config) -> GroundingSFTTrainer:
    """Everything up to ``trainer.train()``: datasets, processor, model, trainer."""
    train_ds, eval_ds, processor, model = load_data_and_model(data_args, model_args, config)
    return GroundingSFTTrainer(
        model=model,
        args=config,
        scoring=scoring,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=processor,
        data_collator=GroundingCollator(processor, config.max_length),
    )


def run_sft(data_args, model_args, scoring, config, command_line: list[str] | None = None) -> GroundingSFTTrainer:
    """The main job: train the hybrid loss, then write ``final/`` and ``final_merged/``."""
    return run_training(data_args, model_args, scoring, config, build_trainer, command_line)


def run_training(data_args, model_args, scoring, config, build, command_line: list[str] | None = None):
    """Build a trainer with ``build(data_args, model_args, scoring, config)``, train, then
    write ``final/`` and (with LoRA) ``final_merged/`` under ``output_dir``.

    Before anything loads, :func:`trl_ground.train.output_dir.prepare_output_dir` checks the output
    directory (and resolves ``resume_from_checkpoint=True`` to the latest checkpoint).
    ``command_line`` (the program and its arguments) is what the Ctrl-C line offers to resume with.

    Raises:
        trl_ground.train.run_errors.OutputError: the output directory or checkpoint cannot be used.
        trl_ground.train.run_errors.NoSpaceError: the disk filled up during a save (naming the file).
        trl_ground.train.run_errors.NothingTrainedError: the run trained 0 steps (no ``final/``).
        trl_ground.train.interrupt.Interrupted: Ctrl-C stopped it after a checkpoint (no ``final/``).
    """
    ensure_demo_assets(data_args, model_args)
    check_run(data_args, model_args, config)  # files, model, GPU: before anything loads
    prepare_output_dir(config, model_args)  # writable, room for a checkpoint, no mixing of runs
    trainer = build(data_args, model_args, scoring, config)
    trainer.run_info = run_info(data_args, model_args, config, command_line, type(trainer).__name__)  # for the model cards
    choice = getattr(trainer, "merged_weights_choice", None)
    if choice is not None and config.grounding_loss and config.performance.sampler_merged_weights == "auto":
        print(choice, flush=True)  # decided by the memory rule: say what and why
    with naming_disk_full(config.output_dir):
        with stop_on_interrupt(trainer) as stop:
            trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
        if stop.stopped_at is not None:
            raise Interrupted(stop.message(config.output_dir, command_line))
        finish_run(trainer, model_args, config.output_dir)
    return trainer


def finish_run(trainer, model_args, output_dir) -> None:
    """After training: ``trainer_state.json``, ``final/`` and (with LoRA) ``final_merged/``;
    a run that trained 0 steps writes none of them (its model is the untrained one)."""
    if trainer.state.global_step == 0:
        args = trainer.args
        raise NothingTrainedError(
            f"the run trained 0 steps (max_steps {args.max_steps}, num_train_epochs {args.num_train_epochs}): "
            f"final/ not written to {output_dir}"
        )
    trainer.save_state()  # trainer_state.json (the log history) in output_dir
    final = save_final(trainer, trainer.processing_class, output_dir)
    if model_args.use_lora and trainer.accelerator.is_main_process:
        merged = merge_adapters(model_args.model, final, Path(output_dir) / "final_merged", write_card=getattr(trainer, "write_model_card", None))
        print(f"merged 16-bit model: {merged}", flush=True)
    if hasattr(trainer, "write_model_card"):
        trainer.write_model_card(output_dir)  # the run's card, now that final/ is there
    trainer.accelerator.wait_for_everyone()
    print(f"adapters / model: {final}", flush=True)
