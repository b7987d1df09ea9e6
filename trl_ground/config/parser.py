"""One parser for every training entry point: a YAML file (``--config``) whose keys are also
CLI flags that override it, through TRL's ``TrlParser``.

On top of TRL's defaults, the command line applies the reference script's (the Unsloth
notebook whose behaviour this project reproduces, see the README): :data:`REFERENCE_DEFAULTS`,
and the learning rate 2e-4 with LoRA or 2e-5 without. Its flag names work as aliases,
on the command line and as YAML keys (:data:`ALIASES`).
"""

from __future__ import annotations

import sys
from dataclasses import fields

from trl import TrlParser

from rewards import ScoringSettings

from .argv import ALIASES, canonical, split_config_flag
from .data import DataArguments
from .model import ModelArguments
from .suggest import unknown_flags_message, unknown_keys_message

__all__ = ["ALIASES", "REFERENCE_DEFAULTS", "GroundingParser", "finalize_args", "parse_args"]

# The reference script's training defaults (TRL's differ); learning_rate is resolved by
# finalize_args once it is known whether LoRA is used.
REFERENCE_DEFAULTS = {
    "per_device_train_batch_size": 2,
    "num_train_epochs": 3.0,
    "learning_rate": None,
    "gradient_accumulation_steps": 4,
    "save_steps": 100,
    "logging_steps": 10,
}
LORA_LEARNING_RATE, FULL_LEARNING_RATE = 2e-4, 2e-5


def _rewrite_aliases(argv: list[str]) -> list[str]:
    """Command-line aliases -> field flags (``--lr=3`` too), ``--config=FILE`` -> ``--config FILE``;
    everything else unchanged."""
    out = []
    for arg in split_config_flag(argv):
        flag, eq, value = arg.partition("=")
        if flag.startswith("--") and flag[2:].replace("-", "_") in ALIASES:
            arg = f"--{canonical(flag)}{eq}{value}"
        out.append(arg)
    return out


class GroundingParser(TrlParser):
    """``TrlParser`` over ``(DataArguments, ModelArguments, ScoringSettings, <trainer config>)``
    with the reference script's defaults and aliases; unknown YAML keys fail with their names."""

    def __init__(self, config_class):
        # no abbreviations: a typo such as --max-step must fail, not pass as --max-steps
        super().__init__((DataArguments, ModelArguments, ScoringSettings, config_class), allow_abbrev=False)
        self.set_defaults(**REFERENCE_DEFAULTS)

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        known = {f.name for dtype in self.dataclass_types for f in fields(dtype)}
        renamed = {canonical(k) if canonical(k) in known else k: v for k, v in kwargs.items()}
        remaining = super().set_defaults_with_config(**renamed)
        if remaining:
            raise ValueError(unknown_keys_message([k[2:] for k in remaining[::2]], known | set(ALIASES)))
        return remaining

    def parse_known_args(self, args=None, namespace=None):
        """Unknown flags fail here, before any dataclass is built, with the closest known names."""
        namespace, remaining = super().parse_known_args(args, namespace)
        if remaining:
            known = {f.name for dtype in self.dataclass_types for f in fields(dtype)} | set(ALIASES) | {"config", "help_all"}
            raise ValueError(unknown_flags_message(remaining, known))
        return namespace, remaining

    def error(self, message):
        """argparse's usage errors (a bad value, a missing argument) as one ``ValueError`` line."""
        raise ValueError(message)


# How users of Hugging Face scripts write "resume from the latest checkpoint" (and "don't").
RESUME_LATEST = ("true", "latest")
RESUME_NONE = ("false", "none", "")


def finalize_args(data_args: DataArguments, model_args: ModelArguments, scoring: ScoringSettings, config) -> None:
    """The one validation step across argument groups (each group checks its own fields in
    ``__post_init__``): fills the learning rate the reference script would use, checks the
    length of the run and reads ``resume_from_checkpoint`` (``true`` / ``latest``: ``True``,
    the latest checkpoint of ``output_dir``). What needs the file system (the output
    directory, the checkpoint) is checked by :func:`trl_ground.output_dir.prepare_output_dir`."""
    if config.learning_rate is None:
        config.learning_rate = LORA_LEARNING_RATE if model_args.use_lora else FULL_LEARNING_RATE
    if config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.per_device_train_batch_size < 1:
        raise ValueError(f"per_device_train_batch_size must be >= 1, got {config.per_device_train_batch_size}")
    if config.max_steps == 0 or config.max_steps < -1:
        raise ValueError(f"max_steps must be > 0, or -1 to train for num_train_epochs; got {config.max_steps}")
    if config.max_steps == -1 and config.num_train_epochs <= 0:
        raise ValueError(f"num_train_epochs (--epochs) must be > 0 when max_steps is -1, got {config.num_train_epochs}")
    if config.save_steps <= 0:
        raise ValueError(f"save_steps must be > 0 (a step count, or a fraction of the run below 1), got {config.save_steps}")
    resume = config.resume_from_checkpoint
    if isinstance(resume, str) and resume.strip().lower() in RESUME_LATEST + RESUME_NONE:
        config.resume_from_checkpoint = True if resume.strip().lower() in RESUME_LATEST else None


def parse_args(argv=None, config_class=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) for a trainer config class
    (:class:`~trl_ground.config.GroundingSFTConfig`, the default, or
    :class:`~trl_ground.config.GroundingGRPOConfig`).

    Returns:
        ``(data_args, model_args, scoring, config)``.
    Raises:
        ValueError for unknown keys and impossible values, before any model is loaded.
    """
    if config_class is None:
        from .training import GroundingSFTConfig as config_class
    argv = _rewrite_aliases(list(sys.argv[1:] if argv is None else argv))
    data_args, model_args, scoring, config = GroundingParser(config_class).parse_args_and_config(argv)
    finalize_args(data_args, model_args, scoring, config)
    return data_args, model_args, scoring, config
