"""What a ``--model`` given to an inference command names: a full (or merged) model, or LoRA
adapters (a LoRA run's ``final/`` or ``checkpoint-N``) whose base is read from their
``adapter_config.json`` with PEFT's own ``PeftConfig``; ``--base-model`` overrides that base.

    source = resolve_model_source("runs/x/final")         # adapters: base from adapter_config.json
    source.base, source.adapter                            # ("unsloth/Qwen3-VL-8B-Instruct", "runs/x/final")

Everything is checked before a weight loads, each problem as one ``ValueError`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .preflight import check_model_source, check_reachable, looks_like_local_path

__all__ = ["ADAPTER_CONFIG", "ModelSource", "is_adapter_dir", "resolve_model_source"]

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class ModelSource:
    """What to load: ``base`` (directory or Hub id) and, optionally, LoRA ``adapter`` on it."""

    base: str
    adapter: str | None = None


def is_adapter_dir(path) -> bool:
    """Whether ``path`` is a directory of LoRA adapters (``adapter_config.json``, no ``config.json``)."""
    p = Path(path).expanduser()
    return (p / ADAPTER_CONFIG).is_file() and not (p / "config.json").is_file()


def adapters_base(adapter_dir: str) -> str:
    """The base model named in ``adapter_dir``'s ``adapter_config.json`` (PEFT's ``PeftConfig``)."""
    from peft import PeftConfig

    try:
        base = PeftConfig.from_pretrained(adapter_dir).base_model_name_or_path
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"{Path(adapter_dir) / ADAPTER_CONFIG}: cannot be read ({str(err).splitlines()[0]})") from err
    if not base:
        raise ValueError(f"{Path(adapter_dir) / ADAPTER_CONFIG} names no base model: give it with --base-model ID_OR_DIR")
    return base


def _check_base(base: str, adapter_dir: str, overridden: bool) -> None:
    """The adapters' base is reachable; otherwise one line saying what was tried and that
    ``--base-model`` names another one."""
    named = "given by --base-model" if overridden else f"named in {Path(adapter_dir) / ADAPTER_CONFIG}"
    path = Path(base).expanduser()
    if looks_like_local_path(base) and not (path / "config.json").is_file():
        found = "not a model directory (no config.json)" if path.is_dir() else "not found"
        hint = "" if overridden else "; --base-model ID_OR_DIR loads them on another base"
        raise ValueError(f"base model of the adapters in {adapter_dir}: {base} ({named}) is {found}: tried {path.resolve()}{hint}")
    try:
        check_reachable(base, "base model", "--base-model")
    except ValueError as err:
        raise ValueError(f"adapters in {adapter_dir}: {err}") from err


def resolve_model_source(model: str, adapter: str | None = None, base_model: str | None = None) -> ModelSource:
    """What ``--model`` / ``--adapter`` / ``--base-model`` name, checked (files, cache or Hub).

    - ``model`` a full or merged model (directory with ``config.json``, or a Hub id): loaded
      as is, with ``adapter`` on it when given;
    - ``model`` a directory of LoRA adapters (``final/`` or ``checkpoint-N`` of a LoRA run):
      loaded on the base that their ``adapter_config.json`` names, or on ``base_model``.

    Raises:
        ValueError: one line: a missing directory, adapters given twice, an unreachable base
            (naming the path tried and ``--base-model``).
    """
    if is_adapter_dir(model):
        if adapter:
            raise ValueError(f"--model {model} holds LoRA adapters, and --adapter {adapter} too: give one of them "
                             "(the base is read from adapter_config.json, or given with --base-model)")
        adapter, base = model, base_model or adapters_base(model)
        _check_base(base, adapter, overridden=bool(base_model))
        return ModelSource(base, adapter)
    if base_model:
        raise ValueError(f"--base-model is for LoRA adapters; --model {model} is a whole model (give its adapters with --adapter)")
    check_reachable(model)
    if adapter:
        check_model_source(adapter, "adapter", ADAPTER_CONFIG)
    return ModelSource(model, adapter)
