"""The trainer commands' command line, read before TRL is imported (so that a mistake is
reported in well under a second, not after the ~10 s TRL takes to import):

- ``--config=FILE`` spelled as ``--config FILE`` (TRL's parser knows only the latter);
- the reference script's flag names (:data:`ALIASES`) as this project's;
- unknown flags and unknown keys of the ``--config`` file refused with the closest names.

The names known without importing TRL are the light argument groups' fields (read live) and
the trainer configs' fields, read from their source files (:mod:`trl_ground.config.source_fields`).
"""

from __future__ import annotations

from dataclasses import MISSING, fields

__all__ = ["ALIASES", "canonical", "check_names", "config_path", "known_names", "split_config_flag"]

# The reference script's flag names -> this project's fields.
ALIASES = {
    "batch_size": "per_device_train_batch_size",
    "epochs": "num_train_epochs",
    "lr": "learning_rate",
    "model_name_or_path": "model",
}
# Accepted by every trainer command besides the fields: the config file, the long help, and
# TRL's ``env`` key of a config file (environment variables to set).
_COMMAND_NAMES = {"config", "help_all"}
_CONFIG_ONLY_KEYS = {"env"}
_NESTED_FIELDS = {"performance"}


def canonical(key: str) -> str:
    """``--batch-size`` / ``batch_size`` / ``lora-r`` -> the field name (``per_device_train_batch_size``, ``lora_r``)."""
    name = key.lstrip("-").replace("-", "_")
    return ALIASES.get(name, name)


def split_config_flag(argv: list[str]) -> list[str]:
    """``--config=FILE`` -> ``--config FILE``; every other argument unchanged."""
    out = []
    for arg in argv:
        if arg.startswith("--config="):
            out += ["--config", arg.split("=", 1)[1]]
        else:
            out.append(arg)
    return out


def config_path(argv: list[str]) -> str | None:
    """The file after ``--config`` (or in ``--config=FILE``); ``ValueError`` when it is missing."""
    argv = split_config_flag(argv)
    if "--config" not in argv:
        return None
    i = argv.index("--config")
    if i + 1 >= len(argv) or argv[i + 1].startswith("--") or not argv[i + 1]:
        raise ValueError("--config needs a YAML file (e.g. --config configs/demo.yaml)")
    return argv[i + 1]


def _light_names(kind: str) -> set[str]:
    """The light groups' field names, plus ``no_<name>`` for the booleans that default to True."""
    from .help import LIGHT_GROUPS

    names = set()
    for dtype in LIGHT_GROUPS[kind]:
        for f in fields(dtype):
            names.add(f.name)
            if f.default is True and f.default_factory is MISSING:
                names.add(f"no_{f.name}")
    return names


def known_names(kind: str) -> set[str]:
    """Every option name (underscores) the full parser of ``trl-ground-<kind>`` accepts."""
    from .source_fields import accepted_names

    # the config's nested settings field (performance) has no flag: its group's fields do
    return _light_names(kind) | (accepted_names(kind) - _NESTED_FIELDS) | set(ALIASES) | _COMMAND_NAMES


def check_names(argv: list[str], kind: str, config: dict | None = None, config_file: str | None = None) -> None:
    """Refuse unknown flags in ``argv`` and unknown keys of the parsed ``config`` mapping.

    Args:
        argv: the command line (``--config=FILE`` already split, see :func:`split_config_flag`).
        kind: ``"sft"`` or ``"grpo"``.
        config: the ``--config`` file's mapping, when there is one; ``config_file`` its path.
    Raises:
        ValueError: ``unknown option --lora-rr (did you mean --lora-r?) ...`` or
            ``unknown key in configs/x.yaml: 'lora_rr' (did you mean lora_r?)``.
    """
    from .suggest import unknown_flags_message, unknown_keys_message

    known = known_names(kind)
    if config:
        unknown = [k for k in config if canonical(str(k)) not in known and k not in _CONFIG_ONLY_KEYS]
        if unknown:
            raise ValueError(unknown_keys_message(unknown, known, where=config_file or "the config file"))
    skip_next = False
    unknown = []
    for arg in argv:
        if skip_next:  # the config file's path
            skip_next = False
            continue
        if arg == "--config":
            skip_next = True
        elif arg.startswith("--") and len(arg) > 2 and canonical(arg.split("=", 1)[0]) not in known:
            unknown.append(arg)
    if unknown:
        raise ValueError(unknown_flags_message(unknown, known))
