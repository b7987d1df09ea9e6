"""Differences between the transformers versions this project runs on (5.17 on the GPU
machine, 5.24 in development), in one place."""

from __future__ import annotations

import warnings

__all__ = ["enable_activation_checkpointing", "silence_checkpointing_renames"]

# transformers 5.24 renamed gradient checkpointing to activation checkpointing and warns on
# the old names: the `gradient_checkpointing` training argument (TRL's configs default it to
# True, so every config built warns), `model.gradient_checkpointing_enable`, and
# `model.is_gradient_checkpointing` (read by PEFT and by TRL's generation helper), and
# `gradient_checkpointing_disable` (TRL's GRPO generation). 5.17 has only the old names, so
# they stay; exactly these messages are filtered.
_RENAME_WARNINGS = (
    r"`(gradient_checkpointing|gradient_checkpointing_kwargs|is_gradient_checkpointing|gradient_checkpointing_enable"
    r"|gradient_checkpointing_disable)` is deprecated"
)


def silence_checkpointing_renames() -> None:
    """Filter the FutureWarnings of the ``gradient_checkpointing`` renames (idempotent)."""
    warnings.filterwarnings("ignore", message=_RENAME_WARNINGS, category=FutureWarning)


def enable_activation_checkpointing(model, use_reentrant: bool = False) -> None:
    """Turn on activation (gradient) checkpointing under the name this transformers has."""
    kwargs = {"use_reentrant": use_reentrant}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
