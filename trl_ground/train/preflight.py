"""What a training run needs, checked before anything loads.

Each check raises ``ValueError`` with one line that names what is wrong and what to do; the
commands print it as ``error: ...`` (:mod:`trl_ground.cli.common`). :func:`check_run` is
called by :func:`trl_ground.train.job.run_training` after the demo assets are built and before
the data, the processor or the model load:

- the files: ``train_json`` (or the YOLO / DOTA label folder and class file), ``img_root``,
  ``eval_json`` (and an eval set whenever ``eval_strategy`` asks for one);
- the model: a local directory holding ``config.json``, or a Hub id that is in the local
  cache or reachable (checked in about a second: offline, or with the Hub unreachable, a
  model missing from the cache fails at once instead of after minutes of retries);
  an ``adapter`` directory holding ``adapter_config.json``;
- the device: 4-bit (bitsandbytes) needs a CUDA GPU;
- ``max_length`` leaves room for an image's tokens (``max_pixels`` / (patch x merge)^2):
  TRL truncates each example to it, and a cut through the image tokens fails in the model;
  :func:`check_prompt_fits` checks a whole prompt once the processor has loaded.

The output directory and the checkpoint to resume from are checked next, by
:func:`trl_ground.train.output_dir.prepare_output_dir` (writable, room for a checkpoint, no other
run's outputs).

:func:`check_config_file` checks a ``--config`` YAML file (exists, readable, a mapping)
before it is parsed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model import MERGE_SIZE, PATCH_SIZE
from ..model.source import check_model_source, check_reachable

__all__ = [
    "check_config_file",
    "check_data_files",
    "check_device",
    "check_max_length",
    "check_model",
    "check_prompt_fits",
    "check_run",
]


def check_run(data_args, model_args, config) -> None:
    """Every check of a training run's inputs (data files, model, device).

    Args:
        data_args: :class:`~trl_ground.config.DataArguments`.
        model_args: :class:`~trl_ground.config.ModelArguments`.
        config: the trainer config (``eval_strategy``, ``use_cpu``).
    Raises:
        ValueError: one line, the first problem found.
    """
    check_data_files(data_args, getattr(config, "eval_strategy", "no"))
    check_reporting(getattr(config, "report_to", None))
    check_device(model_args, config)
    check_model(model_args)
    check_max_length(data_args, model_args, config)


# ---- files ----------------------------------------------------------------------------------
def _readable_file(path, what: str, hint: str = "") -> None:
    p = Path(path)
    suffix = f" ({hint})" if hint else ""
    if not p.exists():
        raise ValueError(f"{what} {path}: file not found{suffix}")
    if p.is_dir():
        raise ValueError(f"{what} {path}: is a directory, not a file{suffix}")
    if not os.access(p, os.R_OK):
        raise ValueError(f"{what} {path}: not readable (permission denied)")


def _directory(path, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{what} {path}: directory not found")
    if not p.is_dir():
        raise ValueError(f"{what} {path}: is a file, not a directory")


def check_config_file(path) -> dict:
    """A ``--config`` file: exists, is readable, and is a YAML mapping of keys to values
    (returned).

    Raises:
        ValueError: ``config file X: file not found``, ``config file X is not valid YAML:
            line L, column C: ...`` and the like.
    """
    import yaml

    _readable_file(path, "config file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {path} is not UTF-8 text (byte {err.start})") from err
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config file {path} is not valid YAML: {where}{problem}") from err
    if not isinstance(content, dict):
        raise ValueError(f"config file {path} must be a YAML mapping (key: value lines), got {type(content).__name__}")
    return content


def check_data_files(data_args, eval_strategy: str = "no") -> None:
    """The data a run reads: ``img_root`` a directory; ``train_json`` (``json`` / ``coco``)
    or ``train_labels`` / ``train_classes`` (``yolo`` / ``dota``) present; ``eval_json``
    present when set, and set when ``eval_strategy`` evaluates."""
    if not data_args.img_root:
        raise ValueError("img_root is required (--img-root DIR: the folder that the image paths are relative to)")
    if data_args.train_format in ("json", "coco") and not data_args.train_json:
        raise ValueError("train_json is required (--train-json FILE); see the README's 'Your first real run'")
    _directory(data_args.img_root, "img_root")
    if data_args.train_format in ("json", "coco"):
        _readable_file(data_args.train_json, "train_json", "make one with trl-ground-make-data or trl-ground-convert-data")
    else:
        _directory(data_args.train_labels, "train_labels")
        if data_args.train_format == "yolo":
            _readable_file(data_args.train_classes, "train_classes")
    evaluates = str(getattr(eval_strategy, "value", eval_strategy)) != "no"
    if data_args.eval_json:
        _readable_file(data_args.eval_json, "eval_json", "--eval-json FILE for your test set, or --eval-strategy no to train without one")
    elif evaluates:
        raise ValueError(f"eval_strategy is {getattr(eval_strategy, 'value', eval_strategy)!r} but no eval_json is set "
                         "(--eval-json FILE, or --eval-strategy no)")


# ---- device -----------------------------------------------------------------------------------
def check_reporting(report_to) -> None:
    """Every logger of ``report_to`` (``wandb``, ``tensorboard`` ...) is installed: otherwise the
    Trainer would fail with a traceback after the data and the model have loaded."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    wanted = [n for n in names if n not in ("none", "all")]
    if not wanted:
        return
    from transformers.integrations import get_available_reporting_integrations

    missing = [n for n in wanted if n not in get_available_reporting_integrations()]
    if missing:
        raise ValueError(f"report_to {', '.join(missing)}: not installed (pip install {' '.join(missing)}), "
                         "or log to the console only with --report-to none")


def check_device(model_args, config=None) -> None:
    """4-bit loading (bitsandbytes NF4) needs a CUDA GPU."""
    if model_args.load_in_4bit:
        from ..model.loading import check_4bit_device  # imports torch: not before the run's arguments are read

        remedy = "add --no-load-in-4bit to train a 16-bit base (more memory), or run on a GPU"
        check_4bit_device("load_in_4bit", remedy, getattr(config, "use_cpu", False))


# ---- model ------------------------------------------------------------------------------------
def check_model(model_args) -> None:
    """The model (and ``adapter``) can be loaded without waiting on the network: a local
    directory, or a Hub id that is cached or whose Hub is reachable. With the Hub unreachable
    and the model cached, the process switches to offline mode."""
    check_reachable(model_args.model)
    if getattr(model_args, "adapter", None):
        check_model_source(model_args.adapter, "adapter", "adapter_config.json")


# ---- max_length -------------------------------------------------------------------------------
def _pixels_per_image_token(model: str) -> int:
    """Pixels one image token covers: (patch_size x merge_size)^2 from the model's processor
    files when it is a local directory, else Qwen3-VL's (16 x 2)^2 = 1024."""
    import json

    for name in ("preprocessor_config.json", "processor_config.json"):
        file = Path(model).expanduser() / name
        if file.is_file():
            try:
                found = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            found = found.get("image_processor", found)
            if "patch_size" in found and "merge_size" in found:
                return (int(found["patch_size"]) * int(found["merge_size"])) ** 2
    return (PATCH_SIZE * MERGE_SIZE) ** 2


def _max_length_message(max_length: int, needed: int, what: str, max_pixels: int) -> str:
    return (f"max_length {max_length} is below the {needed} tokens of {what} (max_pixels {max_pixels}): "
            f"TRL cuts every example there, through its prompt; raise --max-length (e.g. {max(2048, needed + 512)}) or lower --max-pixels")


def check_max_length(data_args, model_args, config) -> None:
    """``config.max_length`` (when set) must exceed an image's tokens at ``data_args.max_pixels``."""
    max_length = getattr(config, "max_length", None)
    if max_length is None:
        return
    image_tokens = data_args.max_pixels // _pixels_per_image_token(model_args.model)
    if max_length <= image_tokens:
        raise ValueError(_max_length_message(max_length, image_tokens, "an image", data_args.max_pixels))


def check_prompt_fits(processor, row: dict, max_length: int | None, max_pixels: int) -> None:
    """The prompt of the dataset ``row`` (system and query text, and its image's tokens) must
    fit in ``max_length``: measured with the processor (cheap: one image), before the model loads."""
    if max_length is None:
        return
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    needed = len(processor(text=[text], images=[row["image"]])["input_ids"][0])
    if max_length < needed:
        raise ValueError(_max_length_message(max_length, needed, "a training prompt (its image included)", max_pixels))
