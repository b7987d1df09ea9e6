"""The trainers' configs: TRL's ``SFTConfig`` / ``GRPOConfig`` plus this project's switches.

Each is a single-inheritance subclass of TRL's config (as TRL's own configs subclass
``TrainingArguments``), and each option's default is its field's default (the command line
adds none). How answers are scored is not here: that is :class:`rewards.ScoringSettings`,
one value object shared by both trainers; the hybrid trainer's performance switches are
:class:`~trl_ground.config.performance.PerformanceSettings`, the config's ``performance``.

``--help`` reads these fields from this file's source without importing it
(:mod:`trl_ground.config.source_fields`): keep defaults and ``metadata["help"]`` literals,
or f-strings of this module's literal constants.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from trl import GRPOConfig, SFTConfig

from rewards.grpo import REWARDS

from ..loss.policy_gradient import LOSS_TYPES as POLICY_LOSS_TYPES
from ..model.compat import silence_checkpointing_renames
from .performance import SAMPLER_NAMES, PerformanceSettings
from .renamed import apply_renamed

silence_checkpointing_renames()  # TRL's configs default gradient_checkpointing to True: see trl_ground.model.compat

__all__ = [
    "CREDITS",
    "GRADIENT_MODES",
    "POLICY_LOSS_TYPES",
    "SAMPLER_NAMES",
    "GroundingGRPOConfig",
    "GroundingSFTConfig",
    "PerformanceSettings",
    "default_learning_rate",
    "resolve_learning_rate",
]

GRADIENT_MODES = ("policy_gradient", "none")
CREDITS = ("box", "sequence")
RESUME_HELP = "Continue a run: a checkpoint-N directory, or 'true' / 'latest' for the latest one of output_dir."
OVERWRITE_HELP = (
    "Train into an output_dir that holds another run's checkpoints or final models, removing them first "
    "(without it such a directory is refused, unless resuming)."
)
# The reference script's training loop (the Unsloth notebook whose behaviour this project
# reproduces), where it differs from TRL's defaults; both trainer configs use it.
BATCH_SIZE, GRADIENT_ACCUMULATION_STEPS, SAVE_STEPS = 2, 4, 100
LORA_LEARNING_RATE, FULL_LEARNING_RATE = 2e-4, 2e-5
LEARNING_RATE_HELP = "The initial learning rate for AdamW; unset: 2e-4 with LoRA, 2e-5 without (the reference script's)."


def default_learning_rate(use_lora: bool) -> float:
    """The learning rate of a run that sets none: the reference script's, 2e-4 with LoRA, 2e-5
    for full fine-tuning."""
    return LORA_LEARNING_RATE if use_lora else FULL_LEARNING_RATE


def resolve_learning_rate(config, model) -> None:
    """Fill an unset ``config.learning_rate`` for a trainer's ``model`` (a config built in Python;
    the command line resolves it from ``use_lora``): a PEFT model (LoRA) gets 2e-4, any other 2e-5."""
    if config.learning_rate is None:
        config.learning_rate = default_learning_rate(hasattr(model, "peft_config"))


def _resolve_bf16(config) -> None:
    """TRL turns bf16 on whenever fp16 is off, which fails on a CPU: here it defaults to
    "if the GPU supports it"."""
    if config.bf16 is None and not config.fp16:
        import torch

        config.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _pin_memory_only_with_cuda(config) -> None:
    """Pinned host memory only speeds up copies to a GPU; without one, torch warns about it at
    every dataloader, so it is turned off."""
    if config.dataloader_pin_memory:
        import torch

        config.dataloader_pin_memory = torch.cuda.is_available()


def _check_columns_kept(config) -> None:
    if config.remove_unused_columns:
        raise ValueError("remove_unused_columns must stay False: the scores read the gt_boxes and class columns")


def _performance_settings(value) -> PerformanceSettings:
    """``None`` (the defaults), a ``PerformanceSettings``, a dict of its fields, or that dict as
    JSON (what a plain ``TrlParser`` gives for ``--performance``)."""
    if value is None:
        return PerformanceSettings()
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        return PerformanceSettings(**value)
    if not isinstance(value, PerformanceSettings):
        raise ValueError(f"performance must be a PerformanceSettings or a dict of its fields, got {type(value).__name__}")
    return value


@dataclass
class GroundingSFTConfig(SFTConfig):
    r"""``trl.SFTConfig`` plus the hybrid loss: grounding terms on answers sampled from the model.

    Parameters:
        > Grounding loss

        grounding_loss (`bool`, defaults to `True`):
            Add the grounding terms to the LM loss (``False``: plain SFT).
        grounding_gradient (`str`, defaults to `"policy_gradient"`):
            ``"policy_gradient"``: the terms' value plus a REINFORCE surrogate (value 0) whose
            gradient makes costly answers less likely; ``"none"``: the terms as constants, the
            reference script's literal behaviour (no gradient of their own).
        credit (`str`, defaults to `"box"`):
            Which advantage each token of a sampled answer carries in the policy gradient:
            ``"box"``: a box's tokens minus its marginal contribution to the answer's dense
            score, the list's opening (through the first ``{``), its closing and the rest the
            answer's advantage (:mod:`trl_ground.loss.rollout`; needs ``cost="dense"``, else
            sequence credit is used, with a warning); ``"sequence"``: every token the
            answer's advantage.
        baseline_momentum (`float`, defaults to `0.9`):
            Momentum of the running-mean cost baselines (one for prompts with boxes, one for
            prompts without) used when ``num_generations`` is 1.
        policy_loss_type (`str`, defaults to `"dr_grpo"`):
            Normalizer of the policy-gradient surrogate, TRL GRPO's ``loss_type`` values:
            ``"dr_grpo"``: the number of answers times ``max_completion_length`` (a constant);
            ``"dapo"``: the micro-batch's answer tokens; ``"grpo"``: each answer's own length,
            then the mean over answers (gives short answers such as ``[]`` a larger weight
            per token; kept for comparison).
        policy_loss_weight (`float`, defaults to `1.0`):
            Weight lambda of the policy-gradient surrogate (its value is 0, so the logged
            grounding value stays the mean cost); choose it on validation.
        drop_flat_groups (`bool`, defaults to `True`):
            With ``num_generations`` > 1, leave out of the policy term the prompts whose K
            answers all cost the same (their answers count in no normalizer; the share is
            logged as ``flat_group_fraction``).
        shuffle_advantages (`bool`, defaults to `False`):
            A benchmark control, not a training option: permute the advantages among the
            micro-batch's answers (seeded by ``seed``), so that the policy gradient keeps its
            size and noise but loses its relation to the reward.

        > Sampling (TRL ``GRPOConfig``'s names where it has the same option)

        num_generations (`int`, defaults to `1`):
            K answers sampled per prompt on sampling steps (the baseline is the mean of the
            other K - 1 when K > 1, a running mean when K = 1). Formerly ``samples_per_prompt``.
        temperature (`float`, defaults to `1.0`):
            Sampling temperature. Formerly ``sample_temperature``.
        max_completion_length (`int`, defaults to `256`):
            Token limit of a sampled answer (Qwen writes ~25 tokens per box). Formerly
            ``sample_max_new_tokens``.
        sample_min_new_tokens (`int`, defaults to `0`):
            Force at least this many tokens (benchmarks pin the answer length this way).
        sample_every_n_steps (`int`, defaults to `1`):
            Sample (and add the grounding terms) on every N-th optimizer step only.
        vllm_importance_sampling_clip_max (`float`, defaults to `3.0`):
            Upper bound of the per-token importance weight ``p_train / p_sampler`` applied to
            the policy gradient of samples drawn with merged sampling weights
            (``performance.sampler_merged_weights``; TRL GRPO's option of the same name, in
            its ``token_truncate`` mode: no vLLM is involved here). Formerly
            ``sampler_importance_clip_max``.

        > Performance

        performance (:class:`~trl_ground.config.PerformanceSettings`, or a dict of its fields):
            The switches that change speed and memory, not the loss: ``sampler``,
            ``pack_samples``, ``sampler_merged_weights`` (true, false or ``"auto"``, the
            default: on where it fits), ``sampler_memory_budget_gb``. On the command
            line and in YAML they are plain keys (``--pack-samples``, ``pack_samples: true``).

        > Outputs

        overwrite_output_dir (`bool`, defaults to `False`):
            Train into an ``output_dir`` that holds another run's ``checkpoint-N`` / ``final/``,
            removing them first (Transformers 5 dropped this field; here it is back).
        resume_from_checkpoint (`str` or `None`, defaults to `None`):
            Continue a run from a ``checkpoint-N`` directory; ``true`` / ``latest``: the latest
            one of ``output_dir``.

        > Parameters that differ from `SFTConfig`

        per_device_train_batch_size (`int`, defaults to `2`), gradient_accumulation_steps
            (`int`, defaults to `4`), save_steps (defaults to `100`): the reference script's.
        learning_rate (`float` or `None`, defaults to `None`): unset, 2e-4 with LoRA and 2e-5
            without (:func:`default_learning_rate`; resolved by the parser, or by the trainer
            from its model).
        max_length (`int` or `None`, defaults to `2048`), remove_unused_columns (`bool`,
            defaults to `False`: the scores read the ``gt_boxes`` and ``class`` columns),
            bf16 (defaults to "if the GPU supports it" instead of always).

        > Deprecated

        samples_per_prompt, sample_temperature, sample_max_new_tokens,
            sampler_importance_clip_max: the old names of the options above
            (:data:`trl_ground.config.renamed.RENAMED`), moved to the new ones with a warning.
    """

    # groups of flags that the project's parser reads flat and puts into these fields
    nested_settings: ClassVar[dict] = {"performance": PerformanceSettings}

    grounding_loss: bool = field(default=True, metadata={"help": "Add the grounding terms (off: plain SFT)."})
    grounding_gradient: str = field(
        default="policy_gradient",
        metadata={"help": f"One of {GRADIENT_MODES}: 'none' adds the terms as constants (the reference script's literal behaviour)."},
    )
    credit: str = field(default="box", metadata={"help": f"One of {CREDITS}: per-box or per-answer advantages in the policy gradient."})
    baseline_momentum: float = field(default=0.9, metadata={"help": "Running-mean baseline momentum (used when K = 1)."})
    policy_loss_type: str = field(
        default="dr_grpo",
        metadata={"help": "dr_grpo, dapo or grpo: the policy-gradient normalizer (answers x max_completion_length, answer tokens, per answer)."},
    )
    policy_loss_weight: float = field(default=1.0, metadata={"help": "Weight lambda of the policy-gradient term (>= 0; choose it on validation)."})
    drop_flat_groups: bool = field(
        default=True, metadata={"help": "With K > 1, leave prompts whose K answers all cost the same out of the policy term."}
    )
    shuffle_advantages: bool = field(
        default=False, metadata={"help": "Benchmark control, not for training: permute the advantages among the answers."}
    )
    num_generations: int = field(default=1, metadata={"help": "K answers sampled per prompt (TRL GRPO's name; was samples_per_prompt)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (was sample_temperature)."})
    max_completion_length: int = field(
        default=256, metadata={"help": "Token limit of a sampled answer, ~25 tokens a box (was sample_max_new_tokens)."}
    )
    sample_min_new_tokens: int = field(default=0, metadata={"help": "Force at least this many tokens (benchmarks)."})
    sample_every_n_steps: int = field(default=1, metadata={"help": "Sample on every N-th optimizer step."})
    vllm_importance_sampling_clip_max: float = field(
        default=3.0,
        metadata={"help": "Cap of the per-token importance weight p_train / p_sampler of merged-weight samples (TRL GRPO's name; no vLLM involved; was sampler_importance_clip_max)."},
    )
    performance: dict | str | PerformanceSettings | None = field(
        default=None,
        metadata={"help": "The performance switches (PerformanceSettings, or a dict of its fields); on the command line, plain flags."},
    )
    per_device_train_batch_size: int = field(default=BATCH_SIZE, metadata={"help": "Batch size per device for training."})
    gradient_accumulation_steps: int = field(
        default=GRADIENT_ACCUMULATION_STEPS, metadata={"help": "Micro-batches accumulated per optimizer step."}
    )
    learning_rate: float | None = field(default=None, metadata={"help": LEARNING_RATE_HELP})
    save_steps: float = field(default=SAVE_STEPS, metadata={"help": "Write a checkpoint every N optimizer steps."})
    output_dir: str | None = field(default="runs/sft_ground", metadata={"help": "Where checkpoints and final models go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": RESUME_HELP})
    max_length: int | None = field(default=2048, metadata={"help": "Maximum tokens per example (prompt + answer)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False (the scores read gt_boxes/class)."})
    # deprecated: the old names (trl_ground.config.renamed)
    samples_per_prompt: int | None = field(default=None, metadata={"help": "Deprecated, use num_generations."})
    sample_temperature: float | None = field(default=None, metadata={"help": "Deprecated, use temperature."})
    sample_max_new_tokens: int | None = field(default=None, metadata={"help": "Deprecated, use max_completion_length."})
    sampler_importance_clip_max: float | None = field(
        default=None, metadata={"help": "Deprecated, use vllm_importance_sampling_clip_max."}
    )

    def __post_init__(self):
        apply_renamed(self)
        self.performance = _performance_settings(self.performance)
        if self.grounding_gradient not in GRADIENT_MODES:
            raise ValueError(f"grounding_gradient must be one of {GRADIENT_MODES}, got {self.grounding_gradient!r}")
        if self.credit not in CREDITS:
            raise ValueError(f"credit must be one of {CREDITS}, got {self.credit!r}")
        if self.policy_loss_type not in POLICY_LOSS_TYPES:
            raise ValueError(f"policy_loss_type must be one of {POLICY_LOSS_TYPES}, got {self.policy_loss_type!r}")
        if not self.policy_loss_weight >= 0:
            raise ValueError(f"policy_loss_weight must be >= 0, got {self.policy_loss_weight}")
        for name in ("num_generations", "max_completion_length", "sample_every_n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.sample_min_new_tokens <= self.max_completion_length:
            raise ValueError("sample_min_new_tokens must lie in [0, max_completion_length]")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.vllm_importance_sampling_clip_max < 1.0:
            raise ValueError(f"vllm_importance_sampling_clip_max must be >= 1, got {self.vllm_importance_sampling_clip_max}")
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise ValueError(f"baseline_momentum must lie in [0, 1), got {self.baseline_momentum}")
        _check_columns_kept(self)
        _resolve_bf16(self)
        _pin_memory_only_with_cuda(self)
        super().__post_init__()

    def to_dict(self):
        """``SFTConfig.to_dict`` with the performance switches as a dict (JSON-ready)."""
        d = super().to_dict()
        d["performance"] = asdict(self.performance)
        return d


@dataclass
class GroundingGRPOConfig(GRPOConfig):
    r"""``trl.GRPOConfig`` whose rewards are this project's grounding scores, chosen by name.

    Parameters:
        rewards (`list[str]`, defaults to `["grounding", "format"]`):
            Reward functions by name (``rewards.grpo.REWARDS``), weighted by ``reward_weights``.
        overwrite_output_dir (`bool`, defaults to `False`), resume_from_checkpoint (`str` or
            `None`, defaults to `None`): as in :class:`GroundingSFTConfig`.

        > Parameters that differ from `GRPOConfig`

        num_generations (`int`, defaults to `4`), max_completion_length (`int`, defaults to
            `256`: ~25 tokens per box; a truncated answer still scores its complete boxes),
            per_device_train_batch_size, gradient_accumulation_steps, save_steps and
            learning_rate: as in :class:`GroundingSFTConfig` (the reference script's),
            bf16 (defaults to "if the GPU supports it").
    """

    rewards: list[str] = field(
        default_factory=lambda: ["grounding", "format"],
        metadata={"help": "Reward functions by name (the keys of rewards.grpo.REWARDS), weighted by reward_weights."},
    )
    output_dir: str | None = field(default="runs/grpo_ground", metadata={"help": "Where checkpoints and final models go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": RESUME_HELP})
    num_generations: int | None = field(default=4, metadata={"help": "Answers sampled per prompt (the group)."})
    max_completion_length: int | None = field(
        default=256, metadata={"help": "Token limit of an answer: ~25 tokens per box; truncated answers score their complete boxes."}
    )
    per_device_train_batch_size: int = field(default=BATCH_SIZE, metadata={"help": "Batch size per device for training."})
    gradient_accumulation_steps: int = field(
        default=GRADIENT_ACCUMULATION_STEPS, metadata={"help": "Micro-batches accumulated per optimizer step."}
    )
    learning_rate: float | None = field(default=None, metadata={"help": LEARNING_RATE_HELP})
    save_steps: float = field(default=SAVE_STEPS, metadata={"help": "Write a checkpoint every N optimizer steps."})

    def __post_init__(self):
        unknown = [name for name in self.rewards if name not in REWARDS]
        if unknown:
            raise ValueError(f"unknown reward(s) {unknown}; valid names: {sorted(REWARDS)}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} entries for {len(self.rewards)} rewards")
        _check_columns_kept(self)
        _resolve_bf16(self)
        _pin_memory_only_with_cuda(self)
        super().__post_init__()
