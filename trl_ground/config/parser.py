"""One parser for every training entry point: a YAML file (``--config``) whose keys are also
CLI flags that override it, through TRL's ``TrlParser``.

The parser adds no defaults of its own: with no flags it gives what the dataclasses give
(``GroundingSFTConfig()``), except what depends on another group, resolved by
:func:`finalize_args` (the learning rate, 2e-4 with LoRA or 2e-5 without). The reference
script's flag names work as aliases, on the command line and as YAML keys (:data:`ALIASES`);
the old names of renamed options (:data:`~trl_ground.config.renamed.RENAMED`) are the configs'
deprecated fields, and giving both names with different values is an error.
"""

from __future__ import annotations

import sys
from dataclasses import fields

from trl import TrlParser

from rewards import ScoringSettings

from .argv import ALIASES, canonical, split_config_flag
from .data import DataArguments
from .model import ModelArguments
from .renamed import RENAMED, conflict_message
from .suggest import unknown_flags_message, unknown_keys_message
from .training import default_learning_rate

__all__ = ["ALIASES", "GroundingParser", "finalize_args", "parse_args"]


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
    """``TrlParser`` over ``(DataArguments, ModelArguments, ScoringSettings, <the config's nested
    settings>, <trainer config>)`` with the reference script's aliases; unknown YAML keys and
    flags fail with their names, and so do an option's old and new names given with different
    values.

    A nested settings object of the config (``GroundingSFTConfig.nested_settings``: the
    ``performance`` field, a :class:`~trl_ground.config.PerformanceSettings`) is parsed as its
    own group of plain flags, not as a flag of its own; :func:`parse_args` puts it into the config.
    """

    def __init__(self, config_class):
        self.nested = dict(getattr(config_class, "nested_settings", {}))
        groups = (DataArguments, ModelArguments, ScoringSettings, *self.nested.values(), config_class)
        self._given_in_file: set[str] = set()
        # no abbreviations: a typo such as --max-step must fail, not pass as --max-steps
        super().__init__(groups, allow_abbrev=False)

    def _parse_dataclass_field(self, parser, field):
        """``TrlParser``'s (a static method there), except that a nested settings field gets no
        flag (its own group's flags fill it), only its place in the namespace, and that a field
        whose metadata names its ``type`` is parsed with it: a switch that also takes ``auto``
        (``PerformanceSettings.sampler_merged_weights``, ``bool | Literal["auto"]``, a union that
        ``TrlParser`` refuses), whose metadata also makes the flag alone mean true."""
        if field.name in self.nested:
            parser.set_defaults(**{field.name: None})
            return
        if "type" in field.metadata:
            names = dict.fromkeys([f"--{field.name}", f"--{field.name.replace('_', '-')}"])
            parser.add_argument(*names, default=field.default, **field.metadata)
            return
        TrlParser._parse_dataclass_field(parser, field)

    def _known_names(self) -> set[str]:
        return {f.name for dtype in self.dataclass_types for f in fields(dtype)} - set(self.nested)

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        known = self._known_names()
        renamed = {canonical(k) if canonical(k) in known else k: v for k, v in kwargs.items()}
        self._given_in_file = set(renamed)
        remaining = super().set_defaults_with_config(**renamed)
        if remaining:
            raise ValueError(unknown_keys_message([k[2:] for k in remaining[::2]], known | set(ALIASES)))
        return remaining

    def parse_known_args(self, args=None, namespace=None):
        """Unknown flags fail here, before any dataclass is built, with the closest known names;
        so do an old and a new name given with different values in the same place (the config
        itself cannot tell a new name given at its default from one not given). A flag
        overrides the config file under either name."""
        namespace, remaining = super().parse_known_args(args, namespace)
        if remaining:
            known = self._known_names() | set(ALIASES) | {"config", "help_all"}
            raise ValueError(unknown_flags_message(remaining, known))
        on_command_line = {canonical(a.split("=", 1)[0]) for a in args or [] if a.startswith("--")}
        for old, new in RENAMED.items():
            if not (hasattr(namespace, old) and hasattr(namespace, new)):
                continue  # a config without that option (GRPO's has no old names)
            old_value, new_value = getattr(namespace, old), getattr(namespace, new)
            for source in (self._given_in_file, on_command_line):
                if old in source and new in source and old_value != new_value:
                    raise ValueError(conflict_message(old, old_value, new_value))
            # a flag overrides the config file, whichever of the two names either uses
            if old in on_command_line and new in self._given_in_file - on_command_line:
                setattr(namespace, new, old_value)
            elif new in on_command_line and old in self._given_in_file - on_command_line:
                setattr(namespace, old, new_value)
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
    directory, the checkpoint) is checked by :func:`trl_ground.train.output_dir.prepare_output_dir`."""
    if config.learning_rate is None:
        config.learning_rate = default_learning_rate(model_args.use_lora)
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
    parser = GroundingParser(config_class)
    data_args, model_args, scoring, *nested, config = parser.parse_args_and_config(argv)
    for name, settings in zip(parser.nested, nested):
        setattr(config, name, settings)
    finalize_args(data_args, model_args, scoring, config)
    return data_args, model_args, scoring, config
