"""The ``README.md`` model card of every folder a run writes (``checkpoint-N``, ``final/``,
``final_merged/`` and the run folder itself), in place of TRL's generic one (which, for a
local base, reads "a fine-tuned version of [None]") and PEFT's empty template: the base
model, how it was adapted, the data files, the command line, the step, the metrics of the
latest evaluation when one has run, and how to load the folder.

:class:`ModelCardMixin` puts it there for a trainer (``GroundingSFTTrainer``,
``GroundingGRPOTrainer``): TRL calls ``create_model_card`` before each checkpoint, and
``_save`` (checkpoints and ``final/``) writes the folder's own card after the weights.
:func:`trl_ground.train.job.run_training` gives the trainer its :class:`RunInfo`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CARD", "ModelCardMixin", "RunInfo", "last_evaluation", "render_card", "run_info"]

CARD = "README.md"
# Logged with every evaluation but saying little about the model.
_EVAL_BOOKKEEPING = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "step", "eval_num_tokens",
                     "eval_sample_seconds", "eval_sampled_tokens", "eval_entropy", "eval_grounding_cost_std",
                     "eval_grounding_cost_group_std")
# What each trainer does, in words.
_TRAINERS = {
    "GroundingSFTTrainer": "SFT plus grounding terms measured on the model's own sampled answers (GroundingSFTTrainer)",
    "GroundingGRPOTrainer": "GRPO with the grounding rewards (GroundingGRPOTrainer)",
}


@dataclass
class RunInfo:
    """What a card says about the run that wrote the folder."""

    base_model: str
    trainer: str = "trl-ground"
    adaptation: str = ""
    data: dict = field(default_factory=dict)
    command_line: list[str] | None = None


def _adaptation(model_args) -> str:
    if not model_args.use_lora:
        return "full fine-tuning (every weight trained)"
    where = [name.removeprefix("finetune_").replace("_", " ") for name in
             ("finetune_vision_layers", "finetune_language_layers", "finetune_attention_modules", "finetune_mlp_modules")
             if getattr(model_args, name)]
    base = "QLoRA (4-bit NF4 base)" if model_args.load_in_4bit else "LoRA (16-bit base)"
    start = f", continued from the adapters {model_args.adapter}" if model_args.adapter else ""
    return f"{base}, r {model_args.lora_r}, alpha {model_args.lora_alpha}, on: {', '.join(where)}{start}"


def run_info(data_args, model_args, config, command_line: list[str] | None, trainer: str) -> RunInfo:
    """The :class:`RunInfo` of a run from its argument groups (``trainer``: what trained it)."""
    data = {key: getattr(data_args, key) for key in ("train_json", "train_format", "train_labels", "eval_json", "img_root",
                                                     "prompt_mode", "add_negatives", "max_pixels")}
    data = {k: v for k, v in data.items() if v not in (None, "", False) and not (k == "train_format" and v == "json")}
    return RunInfo(model_args.model, _TRAINERS.get(trainer, trainer), _adaptation(model_args), data, command_line)


def last_evaluation(log_history: list[dict]) -> tuple[int | None, dict]:
    """``(step, {metric: value})`` of the latest evaluation in a Trainer's ``log_history``
    (``(None, {})`` when none has run)."""
    for entry in reversed(log_history):
        metrics = {k: v for k, v in entry.items() if k.startswith("eval_") and k not in _EVAL_BOOKKEEPING and isinstance(v, (int, float))}
        if metrics:
            return entry.get("step"), metrics
    return None, {}


def _is_hub_id(name: str) -> bool:
    from ..model.source import looks_like_local_path

    return not looks_like_local_path(name) and not Path(name).expanduser().exists()


def _final_name(folder: Path) -> str:
    """The name a folder being written will have: ``.final.staging`` -> ``final``,
    ``.final_merged.1a2b`` -> ``final_merged`` (see :mod:`trl_ground.train.export`)."""
    return folder.name.lstrip(".").split(".")[0] if folder.name.startswith(".") else folder.name


def render_card(info: RunInfo, folder, run_dir, step: int | None, log_history: list[dict] | None = None) -> str:
    """The card of ``folder`` (being written, perhaps under a staging name) of the run in
    ``run_dir``, at optimizer ``step``; what it holds decides what the card says: LoRA
    adapters (``adapter_config.json``), a whole model, or (``folder`` is ``run_dir``) the run."""
    folder, run_dir = Path(folder), Path(run_dir)
    is_run = folder.resolve() == run_dir.resolve()
    name = _final_name(folder)
    location = run_dir if is_run else run_dir / name
    adapters = (folder / "adapter_config.json").is_file() or (is_run and (run_dir / "final" / "adapter_config.json").is_file())
    front = ["---", f"library_name: {'peft' if adapters else 'transformers'}", "pipeline_tag: image-text-to-text",
             "tags:", "- trl-ground", "- qwen3-vl", "- grounding"]
    if _is_hub_id(info.base_model):
        front.insert(1, f"base_model: {info.base_model}")
    if is_run:
        held = "the run: its checkpoints, then `final/` and (after LoRA) `final_merged/`"
    else:
        held = "LoRA adapters (loaded on the base model)" if adapters else "a whole model (weights, config, processor)"
    lines = [*front, "---", "", f"# {location.name}: Qwen3-VL fine-tuned to ground objects", "",
             "Answers a query such as \"Locate every ship\" with boxes, "
             '`[{"bbox_2d": [x1, y1, x2, y2], "label": "ship"}]` (integers 0..1000 relative to the image).', "",
             f"- **Base model:** {info.base_model}", f"- **This folder:** {held}",
             f"- **Training:** {info.trainer}" + (f"; {info.adaptation}" if info.adaptation else "")]
    if step is not None:
        lines.append(f"- **Optimizer step:** {step}")
    if info.data:
        lines += ["", "## Data", ""] + [f"- `{key}`: {value}" for key, value in info.data.items()]
    if info.command_line:
        lines += ["", "## Command", "", "```bash", shlex.join(info.command_line), "```"]
    eval_step, metrics = last_evaluation(log_history or [])
    if metrics:
        lines += ["", f"## Evaluation (step {eval_step}, greedy answers on `eval_json`)", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {key.removeprefix('eval_')} | {value:.4g} |" for key, value in sorted(metrics.items())]
    model = run_dir / "final" if is_run else location
    lines += ["", "## Use", "", "```bash", f"trl-ground-predict --model {model} --test-json data/test.json --out outputs.json", "```"]
    if adapters:
        lines += ["", "The adapters' base is read from their `adapter_config.json` (`--base-model` names another copy of it). "
                  "In Python:", "", "```python", "from peft import PeftModel", "from transformers import AutoModelForImageTextToText", "",
                  f"base = AutoModelForImageTextToText.from_pretrained({info.base_model!r})",
                  f"model = PeftModel.from_pretrained(base, {str(model)!r})", "```"]
    if name.startswith("checkpoint-"):
        lines += ["", f"Resume the run from here: the command above with `--resume-from-checkpoint {location}`."]
    return "\n".join(lines) + "\n"


class ModelCardMixin:
    """For a TRL trainer: the project's card (:func:`render_card`) in the run folder, each
    checkpoint and ``final/`` instead of TRL's and PEFT's. Set :attr:`run_info` before training
    (without it the card names only the base model)."""

    run_info: RunInfo | None = None

    def _card_info(self) -> RunInfo:
        if self.run_info is not None:
            return self.run_info
        config = getattr(self.model, "peft_config", {}).get("default") if hasattr(self.model, "peft_config") else None
        base = getattr(config, "base_model_name_or_path", None) or getattr(self.model.config, "_name_or_path", "") or "unknown"
        return RunInfo(base_model=base, trainer=type(self).__name__)

    def write_model_card(self, folder) -> None:
        """Write the card of ``folder`` (on the main process)."""
        if self.args.should_save:
            text = render_card(self._card_info(), folder, self.args.output_dir, self.state.global_step, self.state.log_history)
            (Path(folder) / CARD).write_text(text, encoding="utf-8")

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's hook (called before each checkpoint and by ``push_to_hub``): the run folder's card."""
        Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
        self.write_model_card(self.args.output_dir)

    def _save(self, output_dir: str | None = None, state_dict=None):
        """The Trainer's save of weights and processor, then the folder's card (over PEFT's)."""
        super()._save(output_dir, state_dict)
        self.write_model_card(output_dir if output_dir is not None else self.args.output_dir)

