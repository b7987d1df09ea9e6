"""Before resuming: does the checkpoint come from this run's setup? Its ``adapter_config.json``
(LoRA) or ``config.json`` (full fine-tuning) is compared with what this run would build, so
that another setup is one line saying what differs instead of pages of missing and
unexpected weight names (or an optimizer whose groups do not match).

Compared: LoRA or full fine-tuning; LoRA's rank, alpha, dropout and where the adapters go
(the four ``finetune_*`` switches, recovered from ``target_modules``); the architecture of a
full model (its sizes). A different base model name is only a warning: the same weights can
live under another path.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

from .run_errors import OutputError

__all__ = ["check_resume_setup", "setup_differences"]

logger = logging.getLogger(__name__)

_SWITCHES = ("finetune_vision_layers", "finetune_language_layers", "finetune_attention_modules", "finetune_mlp_modules")
# (checkpoint's adapter_config.json key, ModelArguments field)
_LORA_NUMBERS = (("r", "lora_r"), ("lora_alpha", "lora_alpha"), ("lora_dropout", "lora_dropout"))
# config.json sizes that decide the shapes of a full model's weights
_ARCHITECTURE = ("model_type", "text_config.hidden_size", "text_config.num_hidden_layers", "text_config.intermediate_size",
                 "text_config.vocab_size", "vision_config.hidden_size", "vision_config.depth")


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _switches_of(target_modules, model_args) -> dict | None:
    """The ``finetune_*`` switches whose :func:`~trl_ground.model.loading.lora_target_modules`
    regex is ``target_modules`` (None when no combination gives it)."""
    from dataclasses import replace

    from ..model.loading import lora_target_modules

    for values in itertools.product((False, True), repeat=len(_SWITCHES)):
        candidate = replace(model_args, **dict(zip(_SWITCHES, values)), use_lora=False, adapter=None, load_in_4bit=False)
        if lora_target_modules(candidate) == target_modules:
            return dict(zip(_SWITCHES, values))
    return None


def _lora_differences(saved: dict, model_args) -> list[str]:
    if model_args.adapter:  # the run continues from these adapters: its setup is theirs
        current = _json(Path(model_args.adapter) / "adapter_config.json") or {}
        numbers = [(key, current.get(key)) for key, _ in _LORA_NUMBERS]
        wanted_targets = current.get("target_modules")
    else:
        from ..model.loading import lora_target_modules

        numbers = [(key, getattr(model_args, field)) for key, field in _LORA_NUMBERS]
        wanted_targets = lora_target_modules(model_args)
    # a key the checkpoint's adapter_config.json lacks is not known to differ
    diffs = [f"{field} {saved[key]} in the checkpoint, {value} here"
             for (key, value), (_, field) in zip(numbers, _LORA_NUMBERS) if key in saved and saved[key] != value]
    if "target_modules" in saved and saved["target_modules"] != wanted_targets:
        switches = _switches_of(saved.get("target_modules"), model_args)
        if switches is None or model_args.adapter:
            diffs.append(f"LoRA target_modules {saved.get('target_modules')!r} in the checkpoint, {wanted_targets!r} here")
        else:
            diffs += [f"{name} {str(value).lower()} in the checkpoint, {str(getattr(model_args, name)).lower()} here"
                      for name, value in switches.items() if value != getattr(model_args, name)]
    return diffs


def _lookup(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def _model_config(model: str) -> dict | None:
    """The ``config.json`` of ``model`` (a local directory, or a Hub id in the local cache)."""
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        path = Path(cached) if isinstance(cached, str) else None
    return _json(path) if path else None


def _architecture_differences(saved: dict, model: str) -> list[str]:
    current = _model_config(model)
    if current is None:
        return []
    return [f"{key} {_lookup(saved, key)} in the checkpoint, {_lookup(current, key)} in {model}"
            for key in _ARCHITECTURE if _lookup(saved, key) != _lookup(current, key)]


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return a == b or (pa.exists() and pb.exists() and pa.resolve() == pb.resolve())


def setup_differences(checkpoint, model_args) -> list[str]:
    """What differs between the setup that wrote ``checkpoint`` and ``model_args`` (empty when
    nothing that matters does, or when the checkpoint holds neither adapters nor a model)."""
    checkpoint = Path(checkpoint)
    adapter = _json(checkpoint / "adapter_config.json")
    config = _json(checkpoint / "config.json")
    if adapter is not None:
        if not model_args.use_lora:
            return [f"it holds LoRA adapters (r {adapter.get('r')}) and this run trains every weight (use_lora false)"]
        base = adapter.get("base_model_name_or_path")
        if base and not _same_model(base, model_args.model):
            logger.warning("resuming adapters trained on %s with the base %s: same weights, or a mismatch?", base, model_args.model)
        return _lora_differences(adapter, model_args)
    if config is not None:
        if model_args.use_lora:
            return ["it holds a fully fine-tuned model and this run trains LoRA adapters (use_lora true)"]
        return _architecture_differences(config, model_args.model)
    return []


def check_resume_setup(checkpoint, model_args) -> None:
    """Refuse to resume ``checkpoint`` with another setup, in one line saying what differs.

    Raises:
        OutputError: ``checkpoint X was written with another setup: lora_r 16 in the
            checkpoint, 8 here; ...``.
    """
    diffs = setup_differences(checkpoint, model_args)
    if diffs:
        raise OutputError(f"cannot resume {checkpoint}: it was written with another setup: {'; '.join(diffs)} "
                          "(resume with the checkpoint's settings, or start afresh in another --output-dir)")
