"""What a ``--model`` given to an inference command names: a full (or merged) model, or LoRA
adapters (a LoRA run's ``final/`` or ``checkpoint-N``) whose base is read from their
``adapter_config.json`` with PEFT's own ``PeftConfig``; ``--base-model`` overrides that base.

    source = resolve_model_source("runs/x/final")         # adapters: base from adapter_config.json
    source.base, source.adapter                            # ("unsloth/Qwen3-VL-8B-Instruct", "runs/x/final")

Everything is checked before a weight loads, each problem as one ``ValueError`` line; the
checks of a model name (a local directory holding ``config.json``, or a Hub id that is
cached or whose Hub answers within about a second) are here too, for training's preflight.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "ADAPTER_CONFIG",
    "HUB_TIMEOUT_S",
    "ModelSource",
    "check_model_source",
    "check_reachable",
    "hub_reachable",
    "is_adapter_dir",
    "looks_like_local_path",
    "resolve_model_source",
]

ADAPTER_CONFIG = "adapter_config.json"
# How long the Hub may take to accept a connection before it counts as unreachable.
HUB_TIMEOUT_S = 1.5


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


def looks_like_local_path(name: str) -> bool:
    """Whether ``name`` can only be meant as a local path (not a Hub id ``owner/name``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if name.startswith(("/", ".", "~")) or os.sep in name.strip(os.sep) and Path(name).parent.is_dir():
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def check_model_source(name: str, what: str = "model", marker: str = "config.json") -> None:
    """Refuse, before anything loads, a ``name`` that is meant as a local directory and is
    not one holding ``marker``. Hub ids (``owner/name``) are left to :func:`check_model`.

    Raises:
        ValueError: ``model directory not found: X`` (or ``adapter ...``) and the like.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} directory not found: {name} is a file")
        if not (path / marker).is_file():
            raise ValueError(f"{name}: not a {what} directory (no {marker})")
    elif looks_like_local_path(name):
        raise ValueError(f"{what} directory not found: {name}")


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint (``HF_ENDPOINT``, or the proxy of ``HTTPS_PROXY``) accepts a
    TCP connection within ``timeout`` seconds (name resolution included)."""
    import socket

    from huggingface_hub import constants

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False
    result = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)  # name resolution ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or flag.upper() in ("1", "ON", "YES", "TRUE")


def _go_offline() -> None:
    """Make this process use the local cache only (no retries against an unreachable Hub)."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def check_reachable(name: str, what: str = "model", flag: str = "--model", marker: str = "config.json") -> None:
    """``name`` (given as ``flag``) can be loaded without waiting on the network: a local
    directory holding ``marker``, or a Hub id that is cached or whose Hub is reachable (with
    the Hub unreachable and ``name`` cached, the process switches to offline mode).

    Raises:
        ValueError: one line naming ``what`` (``model``, ``tokenizer``), ``name`` and ``flag``.
    """
    check_model_source(name, what, marker)
    if Path(name).expanduser().is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(name, marker), str)
    local_hint = f"download it where there is a network (`hf download {name} --local-dir DIR`) and point {flag} at that directory"
    if _hub_offline():
        if not cached:
            raise ValueError(f"{what} {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {local_hint}")
        return
    if not hub_reachable():
        if not cached:
            raise ValueError(f"cannot reach the Hugging Face Hub and {what} {name} is not in the local cache: {local_hint}")
        _go_offline()
