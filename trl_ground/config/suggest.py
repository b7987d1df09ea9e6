"""'Did you mean ...?' for unknown config keys and command-line flags (difflib over the known names)."""

from __future__ import annotations

import difflib

__all__ = ["did_you_mean", "unknown_flags_message", "unknown_keys_message"]


def _normal(name: str) -> str:
    """``--Lora-R`` / ``lora_r`` -> ``lora_r``."""
    return name.lstrip("-").replace("-", "_").lower()


def did_you_mean(name: str, known) -> list[str]:
    """The known names closest to ``name`` (at most 3, best first), compared without dashes
    and case: ``did_you_mean("lora_rr", ["lora_r", "lora_alpha"]) == ["lora_r"]``."""
    by_normal = {_normal(k): k for k in known}
    matches = difflib.get_close_matches(_normal(name), list(by_normal), n=3, cutoff=0.6)
    return [by_normal[m] for m in matches]


def _suggestion(name: str, known, as_flag: bool) -> str:
    close = did_you_mean(name, known)
    if not close:
        return ""
    spelled = [f"--{c.replace('_', '-')}" if as_flag else c for c in close]
    return " (did you mean " + " or ".join(spelled) + "?)"


def unknown_keys_message(keys: list[str], known, where: str = "the config file") -> str:
    """``unknown key 'lora_rr' in configs/x.yaml (did you mean lora_r?)``; several keys joined by ``; ``."""
    parts = [f"'{k}'{_suggestion(k, known, as_flag=False)}" for k in keys]
    noun = "key" if len(keys) == 1 else "keys"
    return f"unknown {noun} in {where}: " + "; ".join(parts)


def unknown_flags_message(args: list[str], known) -> str:
    """The unknown flags among ``args`` (the strings the parser left over):
    ``unknown option --lora-rr (did you mean --lora-r?) (--help lists the options)``."""
    flags = [a.split("=", 1)[0] for a in args if a.startswith("-")]
    if not flags:  # a value without its flag, e.g. the config file without --config
        stray = args[0]
        hint = f" (did you mean --config {stray}?)" if str(stray).endswith((".yaml", ".yml")) else ""
        return f"unexpected argument {stray}{hint} (--help lists the options)"
    parts = [f"{f}{_suggestion(f, known, as_flag=True)}" for f in flags]
    noun = "option" if len(flags) == 1 else "options"
    return f"unknown {noun} " + "; ".join(parts) + " (--help lists the options)"
