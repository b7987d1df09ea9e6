"""The ``--help`` of ``trl-ground-sft`` and ``trl-ground-grpo``: the project's options, grouped,
each with its default, printed in well under a second because nothing here imports torch or TRL.

Every row comes from the dataclasses' fields, the same ones the parser reads: the light
argument groups (:class:`DataArguments`, :class:`ModelArguments`,
:class:`rewards.ScoringSettings`, :class:`PerformanceSettings`) directly; the trainer configs,
which subclass TRL's, from their source files (:mod:`trl_ground.config.source_fields`: the
field's default and ``metadata["help"]``, this project's and the installed TRL's). Nothing
is generated or copied. A few TRL / Transformers options get shorter words here (:data:`_HELP`).

``--help-all`` prints every option, TRL's and Transformers' included (that one imports TRL).
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import MISSING, fields

from rewards import ScoringSettings

from .data import DataArguments
from .model import ModelArguments
from .performance import QLORA_MEMORY_BUDGET_GB, PerformanceSettings

__all__ = ["GROUPS", "KINDS", "LIGHT_GROUPS", "format_help", "option_names", "option_rows"]

KINDS = ("sft", "grpo")
# The argument groups besides the trainer config that each command's parser reads (importing
# none of them imports TRL).
LIGHT_GROUPS = {
    "sft": (DataArguments, ModelArguments, ScoringSettings, PerformanceSettings),
    "grpo": (DataArguments, ModelArguments, ScoringSettings),
}

_LORA = ["lora_r", "lora_alpha", "lora_dropout", "finetune_vision_layers", "finetune_language_layers",
         "finetune_attention_modules", "finetune_mlp_modules"]
_MODEL = ["model", "use_lora", "load_in_4bit", "adapter", "attn_implementation", "packed_vision_attention", "build_tiny_model"]
_SCORING = [f.name for f in fields(ScoringSettings)]
_TRAINING = ["output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
             "learning_rate", "lr_scheduler_type", "warmup_steps", "logging_steps", "save_steps", "save_total_limit",
             "eval_strategy", "eval_steps", "per_device_eval_batch_size", "resume_from_checkpoint", "overwrite_output_dir",
             "gradient_checkpointing", "bf16", "use_cpu", "seed", "report_to"]

# (title, field names) in the order --help shows them; every field of the trainer configs'
# own class bodies must appear here, but the old names of renamed options (the test checks it).
GROUPS = {
    "sft": [
        ("model", _MODEL),
        ("LoRA", _LORA),
        ("data", [f.name for f in fields(DataArguments)]),
        ("grounding loss and scoring (how a sampled answer is scored)",
         ["grounding_loss", "grounding_gradient", "credit", "baseline_momentum", "policy_loss_type", "policy_loss_weight",
          "drop_flat_groups", "shuffle_advantages", *_SCORING]),
        ("sampling (the answers the grounding loss scores)",
         ["num_generations", "temperature", "max_completion_length", "sample_min_new_tokens",
          "sample_every_n_steps", "vllm_importance_sampling_clip_max"]),
        ("performance (speed and memory, not the loss)", [f.name for f in fields(PerformanceSettings)]),
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
_DEFAULT_WORDS = {
    "bf16": "on when the GPU supports it",
    "sampler_memory_budget_gb": f"{QLORA_MEMORY_BUDGET_GB:g} with a 4-bit base, else the GPU's memory",
}
# Shorter words for TRL / Transformers options whose own help is long or general.
_HELP = {
    "max_steps": "Total optimizer steps; overrides num_train_epochs (-1: train for num_train_epochs).",
    "lr_scheduler_type": "Learning-rate schedule: linear, cosine, constant, constant_with_warmup, ...",
    "logging_steps": "Log the metrics every N optimizer steps.",
    "save_total_limit": "Keep at most this many checkpoints (the oldest are deleted).",
    "eval_strategy": "When to evaluate: no, steps or epoch.",
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
_PLAIN_TYPES = ("int", "float", "str", "bool", "list")


def _type_name(tp) -> str:
    """``int``, ``float``, ``str``, ``bool``, ``list``, ``choice:a,b,c`` (an Enum), ``bool:a``
    (a switch that also takes the names ``a``: ``bool | Literal["a"]``) or ``name`` (a choice
    among names that are not listed) for a field's type or its annotation text."""
    import ast
    import enum
    import typing

    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "choice:" + ",".join(str(m.value) for m in tp)
    if isinstance(tp, str):  # annotation text: "int | None", "SchedulerType | str", 'bool | Literal["auto"]'
        names = [p.strip() for p in tp.split("|") if p.strip() != "None"]
        if not names:
            return "str"
        literals = [ast.literal_eval(f"[{p[len('Literal['):-1]}]") for p in names if p.startswith("Literal[")]
        if "bool" in names and literals:
            return "bool:" + ",".join(str(v) for values in literals for v in values)
        first = "list" if names[0].startswith("list") else names[0]
        return first if first in _PLAIN_TYPES else "name"
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is list or (args and all(typing.get_origin(a) is list or a is list for a in args)):
        return "list"
    literals = [v for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    if bool in args and literals:  # the resolved type (a parser resolves the fields' annotations in place)
        return "bool:" + ",".join(str(v) for v in literals)
    if args:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        return _type_name(enums[0] if enums else args[0])
    return getattr(tp, "__name__", "str")


def _first_sentence(text: str) -> str:
    text = " ".join(text.replace("%%", "%").split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _default_text(name: str, value) -> str:
    import enum

    from .source_fields import NOT_LITERAL

    if name in _DEFAULT_WORDS:
        return _DEFAULT_WORDS[name]
    if value is NOT_LITERAL:
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    return repr(value) if isinstance(value, str) and value == "" else str(value)


# ---- the help text ----------------------------------------------------------------------------
def _light_rows(kind: str) -> dict:
    rows = {}
    for dtype in LIGHT_GROUPS[kind]:
        for f in fields(dtype):
            default = f.default if f.default is not MISSING else f.default_factory()
            rows[f.name] = [_type_name(f.type), _default_text(f.name, default), f.metadata.get("help", "")]
    return rows


def option_rows(kind: str) -> dict[str, list[str]]:
    """``{name: [type, default, help, alias]}`` for every option ``--help`` shows for ``kind``."""
    from .argv import ALIASES
    from .source_fields import trainer_fields

    alias_of = {field: alias for alias, field in ALIASES.items()}
    light = _light_rows(kind)
    trainer = trainer_fields(kind)
    rows = {}
    for name in option_names(kind):
        if name in light:
            rows[name] = [*light[name], ""]
        else:
            f = trainer[name]
            text = _HELP.get(name) or _first_sentence(f.help)
            rows[name] = [_type_name(f.annotation), _default_text(name, f.default), text, alias_of.get(name, "")]
    if "rewards" in rows:
        from rewards.grpo import REWARDS

        rows["rewards"][2] += f" Names: {', '.join(sorted(REWARDS))}."
    return rows


def option_names(kind: str) -> list[str]:
    """The field names ``--help`` shows for ``kind`` (``"sft"`` or ``"grpo"``), in order."""
    return [name for _, names in GROUPS[kind] for name in names]


def _flag(name: str, type_name: str, default: str, alias: str) -> str:
    spelled = [f"--{n.replace('_', '-')}" for n in ([alias] if alias else []) + [name]]
    if type_name == "bool":
        negative = f" / --no-{name.replace('_', '-')}" if default == "True" else ""
        return ", ".join(spelled) + negative
    if type_name.startswith("bool:"):  # the flag alone means true
        return ", ".join(spelled) + " [" + "|".join(["true", "false", *type_name[5:].split(",")]) + "]"
    choices = type_name.split(":", 1)[1].split(",") if type_name.startswith("choice:") else []
    if 0 < len(choices) <= 4:
        metavar = "{" + ",".join(choices) + "}"
    elif choices or type_name == "name":
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
    rows = option_rows(kind)
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
