"""The ``--help`` of ``trl-ground-sft`` and ``trl-ground-grpo``: the project's options, grouped,
printed in well under a second because nothing here imports torch or TRL.

The light argument groups (:class:`DataArguments`, :class:`ModelArguments`,
:class:`rewards.ScoringSettings`) are read directly. The trainer configs subclass TRL's, so
what the help shows of them (their own fields and the TRL options listed in :data:`GROUPS`,
with the parser's defaults) lives in a table generated from them,
:mod:`trl_ground.config.trainer_fields`; a test checks that it still matches:

    python -m trl_ground.config.help --write-table     # after changing a trainer config field

``--help-all`` prints every option, TRL's and Transformers' included (that one imports TRL).
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import MISSING, fields
from pathlib import Path

from rewards import ScoringSettings

from .data import DataArguments
from .model import ModelArguments

__all__ = ["GROUPS", "KINDS", "format_help", "generate_options", "generate_table", "option_names"]

KINDS = ("sft", "grpo")

_LORA = ["lora_r", "lora_alpha", "lora_dropout", "finetune_vision_layers", "finetune_language_layers",
         "finetune_attention_modules", "finetune_mlp_modules"]
_MODEL = ["model", "use_lora", "load_in_4bit", "adapter", "attn_implementation", "packed_vision_attention", "build_tiny_model"]
_SCORING = [f.name for f in fields(ScoringSettings)]
_TRAINING = ["output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
             "learning_rate", "lr_scheduler_type", "warmup_steps", "logging_steps", "save_steps", "save_total_limit",
             "eval_strategy", "eval_steps", "per_device_eval_batch_size", "resume_from_checkpoint", "overwrite_output_dir",
             "gradient_checkpointing", "bf16", "use_cpu", "seed", "report_to"]

# (title, field names) in the order --help shows them; every field of the trainer configs'
# own class bodies must appear here (the test of the table checks it).
GROUPS = {
    "sft": [
        ("model", _MODEL),
        ("LoRA", _LORA),
        ("data", [f.name for f in fields(DataArguments)]),
        ("grounding loss and scoring (how a sampled answer is scored)",
         ["grounding_loss", "grounding_gradient", "credit", "baseline_momentum", "policy_loss_type", "policy_loss_weight",
          "drop_flat_groups", "shuffle_advantages", *_SCORING]),
        ("sampling (the answers the grounding loss scores)",
         ["samples_per_prompt", "sample_temperature", "sample_max_new_tokens", "sample_min_new_tokens",
          "sample_every_n_steps", "sampler", "pack_samples",
          "sampler_merged_weights", "sampler_importance_clip_max"]),
        ("training and output", [*_TRAINING, "max_length", "remove_unused_columns"]),
    ],
    "grpo": [
        ("model", _MODEL),
        ("LoRA", _LORA),
        ("data", [f.name for f in fields(DataArguments)]),
        ("rewards and scoring (how a sampled answer is scored)", ["rewards", "reward_weights", *_SCORING]),
        ("sampling (the group of answers GRPO compares)",
         ["num_generations", "max_completion_length", "temperature", "top_p", "beta"]),
        ("training and output", _TRAINING),
    ],
}

# Defaults that depend on something else, in words.
_DEFAULT_WORDS = {"learning_rate": "2e-4 with LoRA, 2e-5 without", "bf16": "on when the GPU supports it"}
# Shorter words for TRL / Transformers options whose own help is long or general.
_HELP = {
    "max_steps": "Total optimizer steps; overrides num_train_epochs (-1: train for num_train_epochs).",
    "lr_scheduler_type": "Learning-rate schedule: linear, cosine, constant, constant_with_warmup, ...",
    "logging_steps": "Log the metrics every N optimizer steps.",
    "save_steps": "Write a checkpoint every N optimizer steps.",
    "save_total_limit": "Keep at most this many checkpoints (the oldest are deleted).",
    "eval_steps": "With eval_strategy steps: evaluate every N optimizer steps (default: logging_steps).",
    "per_device_eval_batch_size": "Batch size per device for evaluation.",
    "gradient_checkpointing": "Recompute activations in the backward pass: less memory, ~20% slower.",
    "bf16": "Compute in bf16 under autocast; full fine-tuning keeps fp32 master weights, LoRA's frozen base is stored in bf16.",
    "use_cpu": "Train on the CPU even when a GPU is present.",
    "report_to": "Where to log: none, wandb, tensorboard, trackio, all.",
    "reward_weights": "One weight per reward, in the order of rewards (default: all 1.0).",
    "top_p": "Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.",
    "beta": "KL coefficient against the reference model (0: no reference model is loaded).",
}
# Metavariables of the options that name files and folders.
_METAVARS = {
    "train_json": "FILE", "eval_json": "FILE", "train_classes": "FILE", "img_root": "DIR", "train_labels": "DIR",
    "output_dir": "DIR", "adapter": "DIR", "resume_from_checkpoint": "DIR", "model": "ID_OR_DIR",
}
_WIDTH = 36  # the column where the help text starts


# ---- the table of the trainer configs' fields (generated) ------------------------------------
def _type_name(tp) -> str:
    """``int``, ``float``, ``str``, ``bool``, ``list`` or ``choice:a,b,c`` for a dataclass field type."""
    import enum
    import typing

    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "choice:" + ",".join(str(m.value) for m in tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is list or (args and all(typing.get_origin(a) is list or a is list for a in args)):
        return "list"
    if args:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        return _type_name(enums[0] if enums else args[0])
    if isinstance(tp, str):  # postponed annotations: "int | None"
        names = [p.strip() for p in tp.split("|") if p.strip() != "None"]
        return "list" if names and names[0].startswith("list") else names[0] if names else "str"
    return getattr(tp, "__name__", "str")


def _first_sentence(text: str) -> str:
    text = " ".join(text.replace("%%", "%").split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _default_text(name: str, value) -> str:
    import enum

    if name in _DEFAULT_WORDS:
        return _DEFAULT_WORDS[name]
    if isinstance(value, enum.Enum):
        value = value.value
    return repr(value) if isinstance(value, str) and value == "" else str(value)


def generate_table() -> dict:
    """``{kind: {"own": [names], "fields": {name: [type, default, help, alias]}}}`` for the
    trainer-config options of :data:`GROUPS`, read from the config classes and the parser's
    defaults and aliases (imports TRL)."""
    from .parser import ALIASES, REFERENCE_DEFAULTS
    from .training import GroundingGRPOConfig, GroundingSFTConfig

    light = {f.name for dtype in (DataArguments, ModelArguments, ScoringSettings) for f in fields(dtype)}
    alias_of = {field: alias for alias, field in ALIASES.items()}
    table = {}
    for kind, cls in (("sft", GroundingSFTConfig), ("grpo", GroundingGRPOConfig)):
        by_name = {f.name: f for f in fields(cls)}
        rows = {}
        for _, names in GROUPS[kind]:
            for name in names:
                if name in light:
                    continue
                f = by_name[name]
                default = f.default if f.default is not MISSING else f.default_factory() if f.default_factory is not MISSING else None
                default = REFERENCE_DEFAULTS.get(name, default)
                text = _HELP.get(name) or _first_sentence(f.metadata.get("help", ""))
                rows[name] = [_type_name(f.type), _default_text(name, default), text, alias_of.get(name, "")]
        table[kind] = {"own": list(cls.__dict__.get("__annotations__", {})), "fields": rows}
    return table


def _write_generated(path: Path, docstring: list[str], name: str, body: list[str]) -> Path:
    """Write a generated module: ``docstring`` (its lines), then ``name = {`` ``body`` ``}``."""
    lines = ['"""' + docstring[0], *docstring[1:-1], docstring[-1] + '"""', "", "# fmt: off", f"{name} = {{", *body, "}", "# fmt: on", ""]
    path.write_text("\n".join(lines))
    return path


def write_table(path: Path | None = None) -> Path:
    """Regenerate :mod:`trl_ground.config.trainer_fields` from the trainer configs."""
    import json

    body = []
    for kind, entry in generate_table().items():
        body += [f"    {kind!r}: {{", f"        'own': {entry['own']!r},", "        'fields': {"]
        body += [f"            {name!r}: {json.dumps(row)}," for name, row in entry["fields"].items()]
        body += ["        },", "    },"]
    docstring = ["The trainer configs' options as ``--help`` shows them (type, default, help, the reference",
                 "script's alias), generated from ``GroundingSFTConfig`` / ``GroundingGRPOConfig`` and the parser's",
                 "defaults by ``python -m trl_ground.config.help --write-table``; a test checks that it matches them."]
    return _write_generated(Path(path) if path else Path(__file__).with_name("trainer_fields.py"), docstring, "TRAINER_FIELDS", body)


def generate_options() -> dict:
    """``{kind: sorted names}``: every option of the trainer configs that the full parser of
    ``trl-ground-<kind>`` accepts, spelled with underscores (``no_<name>`` for the negated
    booleans); the light groups' own fields are left out (read live). Imports TRL."""
    from .parser import GroundingParser
    from .training import GroundingGRPOConfig, GroundingSFTConfig

    light = {f.name for dtype in (DataArguments, ModelArguments, ScoringSettings) for f in fields(dtype)}
    table = {}
    for kind, cls in (("sft", GroundingSFTConfig), ("grpo", GroundingGRPOConfig)):
        names = {s.lstrip("-").replace("-", "_") for s in GroundingParser(cls)._option_string_actions if s.startswith("--")}
        table[kind] = sorted(n for n in names if n not in light and n.removeprefix("no_") not in light and n != "help")
    return table


def write_options(path: Path | None = None) -> Path:
    """Regenerate :mod:`trl_ground.config.trainer_options` from the full parsers."""
    body = []
    for kind, names in generate_options().items():
        body.append(f"    {kind!r}: [")
        row = "       "
        for name in names:
            if len(row) + len(name) + 4 > 110:
                body.append(row)
                row = "       "
            row += f" {name!r},"
        body += [row, "    ],"]
    docstring = ["Every option of the trainer configs that ``trl-ground-sft`` / ``trl-ground-grpo`` accept, for",
                 "checking a command line before TRL is imported (:mod:`trl_ground.config.argv`); generated by",
                 "``python -m trl_ground.config.help --write-table``; a test checks that it matches the parsers."]
    return _write_generated(Path(path) if path else Path(__file__).with_name("trainer_options.py"), docstring, "TRAINER_OPTIONS", body)


# ---- the help text ----------------------------------------------------------------------------
def _light_rows() -> dict:
    rows = {}
    for dtype in (DataArguments, ModelArguments, ScoringSettings):
        for f in fields(dtype):
            default = f.default if f.default is not MISSING else f.default_factory()
            rows[f.name] = [_type_name(f.type), _default_text(f.name, default), f.metadata.get("help", ""), ""]
    return rows


def _rows(kind: str) -> dict:
    from .trainer_fields import TRAINER_FIELDS

    return {**_light_rows(), **TRAINER_FIELDS[kind]["fields"]}


def option_names(kind: str) -> list[str]:
    """The field names ``--help`` shows for ``kind`` (``"sft"`` or ``"grpo"``), in order."""
    return [name for _, names in GROUPS[kind] for name in names]


def _flag(name: str, type_name: str, default: str, alias: str) -> str:
    spelled = [f"--{n.replace('_', '-')}" for n in ([alias] if alias else []) + [name]]
    if type_name == "bool":
        negative = f" / --no-{name.replace('_', '-')}" if default == "True" else ""
        return ", ".join(spelled) + negative
    choices = type_name.split(":", 1)[1].split(",") if type_name.startswith("choice:") else []
    if 0 < len(choices) <= 4:
        metavar = "{" + ",".join(choices) + "}"
    elif choices:
        metavar = "NAME"
    elif type_name == "list":
        metavar = "NAME [NAME ...]"
    else:
        metavar = _METAVARS.get(name, type_name.upper().replace("FLOAT", "NUM").replace("STR", "TEXT"))
    return ", ".join(spelled) + " " + metavar


def _entry(flag: str, text: str, width: int) -> list[str]:
    indent = " " * _WIDTH
    lead = f"  {flag}"
    body = textwrap.wrap(text, width=max(width - _WIDTH, 30)) or [""]
    if len(lead) < _WIDTH - 1:
        return [lead.ljust(_WIDTH) + body[0]] + [indent + line for line in body[1:]]
    return [lead] + [indent + line for line in body]


def format_help(kind: str, prog: str, description: str, width: int | None = None) -> str:
    """The help text of ``prog`` for the trainer ``kind``: ``description``, then ``--config``
    and the project's options by group, each with its default; TRL's behind ``--help-all``."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 110)
    rows = _rows(kind)
    lines = [f"usage: {prog} --config FILE.yaml [--OPTION VALUE ...]", "", description.strip(), "",
             "Every YAML key is also a flag (--train-json or --train_json), and flags override the file.",
             "", "options:"]
    lines += _entry("--config FILE.yaml", "YAML file of options (configs/*.yaml); flags given after it override it.", width)
    lines += _entry("-h, --help", "show this help and exit", width)
    lines += _entry("--help-all", "also list every TRL / Transformers option (several hundred)", width)
    lines += _entry("--debug", "show the traceback of an error instead of one line (also TRL_GROUND_DEBUG=1)", width)
    for title, names in GROUPS[kind]:
        lines += ["", f"{title}:"]
        for name in names:
            type_name, default, text, alias = rows[name]
            shown = "" if default in ("None", "") and type_name != "bool" else f" (default: {_shorten(default)})"
            lines += _entry(_flag(name, type_name, default, alias), f"{text}{shown}", width)
    return "\n".join(lines) + "\n"


def _shorten(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-table"]:
        print(write_table())
        print(write_options())
    else:
        sys.exit("usage: python -m trl_ground.config.help --write-table")
