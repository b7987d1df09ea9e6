"""Options renamed to TRL's names (``GRPOConfig``'s, for the same concept), and how their old
spellings keep working.

As TRL does for its own renamed arguments (``vllm_importance_sampling_cap`` ->
``vllm_importance_sampling_clip_max``), each old name stays a field of the config, default
``None``, so that it is accepted everywhere a user can give it: a YAML key, a command-line
flag (``--samples-per-prompt`` / ``--samples_per_prompt``) and a Python keyword. The
config's ``__post_init__`` moves its value to the new name with one ``FutureWarning`` line
(:class:`RenamedOptionWarning`); both names with different values are an error.
"""

from __future__ import annotations

import warnings
from dataclasses import MISSING, fields

__all__ = ["RENAMED", "RenamedOptionWarning", "apply_renamed", "renamed_notice"]

# old name -> new name (TRL GRPOConfig's)
RENAMED = {
    "samples_per_prompt": "num_generations",
    "sample_temperature": "temperature",
    "sample_max_new_tokens": "max_completion_length",
    "sampler_importance_clip_max": "vllm_importance_sampling_clip_max",
}


class RenamedOptionWarning(FutureWarning):
    """An option was given under its old name (the commands print it as one ``warning:`` line)."""


def renamed_notice(old: str) -> str:
    new = RENAMED[old]
    return (f"{old} (--{old.replace('_', '-')}) is now {new} (--{new.replace('_', '-')}), TRL's name; "
            f"the old name still works for now")


def conflict_message(old: str, old_value, new_value) -> str:
    new = RENAMED[old]
    return (f"{old} is the old name of {new}, and both are given with different values "
            f"({old_value!r} and {new_value!r}): give only {new}")


def apply_renamed(config) -> None:
    """Move every old-name field of ``config`` that is set (not ``None``) to its new name, with
    a :class:`RenamedOptionWarning`, and reset it to ``None`` (so that ``dataclasses.replace``
    does not warn again). Raises ``ValueError`` when the new name also holds a value other
    than its default and the old one's."""
    defaults = {f.name: f.default for f in fields(config) if f.name in RENAMED.values() and f.default is not MISSING}
    for old, new in RENAMED.items():
        value = getattr(config, old, None)
        if value is None:
            continue
        current = getattr(config, new)
        if current != defaults.get(new) and current != value:
            raise ValueError(conflict_message(old, value, current))
        # stack: apply_renamed < __post_init__ < the dataclass's __init__ < the caller
        warnings.warn(renamed_notice(old), RenamedOptionWarning, stacklevel=4)
        setattr(config, new, value)
        setattr(config, old, None)
