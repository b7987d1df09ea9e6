"""The trainers' configs: TRL's ``SFTConfig`` / ``GRPOConfig`` plus this project's switches.

Each is a single-inheritance subclass of TRL's config (as TRL's own configs subclass
``TrainingArguments``). How answers are scored is not here: that is
:class:`rewards.ScoringSettings`, one value object shared by both trainers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, SFTConfig

from rewards.grpo import REWARDS

from ..compat import silence_checkpointing_renames
from ..policy_gradient import LOSS_TYPES as POLICY_LOSS_TYPES

silence_checkpointing_renames()  # TRL's configs default gradient_checkpointing to True: see trl_ground.compat

__all__ = ["CREDITS", "GRADIENT_MODES", "POLICY_LOSS_TYPES", "SAMPLERS", "GroundingGRPOConfig", "GroundingSFTConfig"]

GRADIENT_MODES = ("policy_gradient", "none")
CREDITS = ("box", "sequence")
SAMPLERS = ("static", "generate", "speculative")
RESUME_HELP = "Continue a run: a checkpoint-N directory, or 'true' / 'latest' for the latest one of output_dir."
OVERWRITE_HELP = (
    "Train into an output_dir that holds another run's checkpoints or final models, removing them first "
    "(without it such a directory is refused, unless resuming)."
)


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
            answer's advantage (:mod:`trl_ground.rollout`; needs the dense cost, else sequence
            credit is used); ``"sequence"``: every token the answer's advantage.
        baseline_momentum (`float`, defaults to `0.9`):
            Momentum of the running-mean cost baselines (one for prompts with boxes, one for
            prompts without) used when ``samples_per_prompt`` is 1.
        policy_loss_type (`str`, defaults to `"dr_grpo"`):
            Normalizer of the policy-gradient surrogate, TRL GRPO's ``loss_type`` values:
            ``"dr_grpo"``: the number of answers times ``sample_max_new_tokens`` (a constant);
            ``"dapo"``: the micro-batch's answer tokens; ``"grpo"``: each answer's own length,
            then the mean over answers (gives short answers such as ``[]`` a larger weight
            per token; kept for comparison).
        policy_loss_weight (`float`, defaults to `1.0`):
            Weight lambda of the policy-gradient surrogate (its value is 0, so the logged
            grounding value stays the mean cost); choose it on validation.
        drop_flat_groups (`bool`, defaults to `True`):
            With ``samples_per_prompt`` > 1, leave out of the policy term the prompts whose K
            answers all cost the same (their answers count in no normalizer; the share is
            logged as ``flat_group_fraction``).
        shuffle_advantages (`bool`, defaults to `False`):
            A benchmark control, not a training option: permute the advantages among the
            micro-batch's answers (seeded by ``seed``), so that the policy gradient keeps its
            size and noise but loses its relation to the reward.

        > Sampling

        samples_per_prompt (`int`, defaults to `1`):
            K answers sampled per prompt on sampling steps (the baseline is the mean of the
            other K - 1 when K > 1).
        sample_temperature (`float`, defaults to `1.0`):
            Sampling temperature.
        sample_max_new_tokens (`int`, defaults to `256`):
            Token limit of a sampled answer (Qwen writes ~25 tokens per box).
        sample_min_new_tokens (`int`, defaults to `0`):
            Force at least this many tokens (benchmarks pin the answer length this way).
        sample_every_n_steps (`int`, defaults to `1`):
            Sample (and add the grounding terms) on every N-th optimizer step only.

        > Performance

        sampler (`str`, defaults to `"static"`):
            ``"static"``: static KV cache with the decode step replayed from a CUDA graph;
            ``"generate"``: plain ``model.generate``; ``"speculative"``: drafts from each
            prompt's target answer verified in blocks (exact samples in fewer decode steps;
            eager, no CUDA graph yet). Chosen once (:func:`trl_ground.sampler.make_sampler`):
            under FSDP / ZeRO-3 every choice samples with ``generate``.
        pack_samples (`bool`, defaults to `False`):
            Shared-prefix packing of the fused pass: each prompt once, followed by its target
            and its K answers under a block attention mask (:mod:`trl_ground.packing`); same
            loss and gradients for 0.63x the tokens at K = 1 (0.37x at K = 4) on the step
            benchmark's shape, and the images through the vision tower once. Needs
            ``attn_implementation="sdpa"``. Not yet timed on a GPU.
        sampler_merged_weights (`bool`, defaults to `False`):
            Sample with each LoRA linear merged into one dense matrix (base dequantized when
            4-bit), refreshed every sampling step: fewer kernels and bytes per decode step
            for one dense copy of the adapted linears (~14 GB for the 8B model, +14-16 GB peak measured);
            :mod:`trl_ground.sampling_weights`. Its rounding makes the samples come from a
            slightly different model, corrected by truncated importance weights.
        sampler_importance_clip_max (`float`, defaults to `3.0`):
            Upper bound of the per-token importance weight ``p_train / p_sampler`` applied
            to the policy gradient of merged-weight samples (TRL GRPO's
            ``vllm_importance_sampling_clip_max``, ``token_truncate`` mode).

        > Outputs

        overwrite_output_dir (`bool`, defaults to `False`):
            Train into an ``output_dir`` that holds another run's ``checkpoint-N`` / ``final/``,
            removing them first (Transformers 5 dropped this field; here it is back).
        resume_from_checkpoint (`str` or `None`, defaults to `None`):
            Continue a run from a ``checkpoint-N`` directory; ``true`` / ``latest``: the latest
            one of ``output_dir``.

        > Parameters that differ from `SFTConfig`

        max_length (`int` or `None`, defaults to `2048`), remove_unused_columns (`bool`,
            defaults to `False`: the scores read the ``gt_boxes`` and ``class`` columns),
            bf16 (defaults to "if the GPU supports it" instead of always).
    """

    grounding_loss: bool = field(default=True, metadata={"help": "Add the grounding terms (off: plain SFT)."})
    grounding_gradient: str = field(
        default="policy_gradient",
        metadata={"help": f"One of {GRADIENT_MODES}: 'none' adds the terms as constants (the reference script's literal behaviour)."},
    )
    credit: str = field(default="box", metadata={"help": f"One of {CREDITS}: per-box or per-answer advantages in the policy gradient."})
    baseline_momentum: float = field(default=0.9, metadata={"help": "Running-mean baseline momentum (used when K = 1)."})
    policy_loss_type: str = field(
        default="dr_grpo",
        metadata={"help": f"One of {POLICY_LOSS_TYPES}: the policy-gradient normalizer (answers x max new tokens, answer tokens, per answer)."},
    )
    policy_loss_weight: float = field(default=1.0, metadata={"help": "Weight lambda of the policy-gradient term (>= 0; choose it on validation)."})
    drop_flat_groups: bool = field(
        default=True, metadata={"help": "With K > 1, leave prompts whose K answers all cost the same out of the policy term."}
    )
    shuffle_advantages: bool = field(
        default=False, metadata={"help": "Benchmark control, not for training: permute the advantages among the answers."}
    )
    samples_per_prompt: int = field(default=1, metadata={"help": "K answers sampled per prompt."})
    sample_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    sample_max_new_tokens: int = field(default=256, metadata={"help": "Token limit of a sampled answer."})
    sample_min_new_tokens: int = field(default=0, metadata={"help": "Force at least this many tokens (benchmarks)."})
    sample_every_n_steps: int = field(default=1, metadata={"help": "Sample on every N-th optimizer step."})
    sampler: str = field(
        default="static",
        metadata={"help": "'static': static KV cache + CUDA-graph decode step; 'generate': plain model.generate; "
                  "'speculative': drafts from the target answer, verified in blocks (eager)."},
    )
    pack_samples: bool = field(
        default=False,
        metadata={"help": "Fused pass with each prompt once, its target and answers after it (same maths, fewer tokens; sdpa only)."},
    )
    sampler_merged_weights: bool = field(
        default=False,
        metadata={"help": "Sample with each LoRA linear merged into one dense matrix: faster decoding, costs a dense copy of the adapted linears."},
    )
    sampler_importance_clip_max: float = field(
        default=3.0, metadata={"help": "Cap of the per-token importance weight p_train / p_sampler of merged-weight samples."}
    )
    output_dir: str | None = field(default="runs/sft_ground", metadata={"help": "Where checkpoints and final models go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": RESUME_HELP})
    max_length: int | None = field(default=2048, metadata={"help": "Maximum tokens per example (prompt + answer)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False (the scores read gt_boxes/class)."})

    def __post_init__(self):
        if self.grounding_gradient not in GRADIENT_MODES:
            raise ValueError(f"grounding_gradient must be one of {GRADIENT_MODES}, got {self.grounding_gradient!r}")
        if self.credit not in CREDITS:
            raise ValueError(f"credit must be one of {CREDITS}, got {self.credit!r}")
        if self.policy_loss_type not in POLICY_LOSS_TYPES:
            raise ValueError(f"policy_loss_type must be one of {POLICY_LOSS_TYPES}, got {self.policy_loss_type!r}")
        if not self.policy_loss_weight >= 0:
            raise ValueError(f"policy_loss_weight must be >= 0, got {self.policy_loss_weight}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        for name in ("samples_per_prompt", "sample_max_new_tokens", "sample_every_n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.sample_min_new_tokens <= self.sample_max_new_tokens:
            raise ValueError("sample_min_new_tokens must lie in [0, sample_max_new_tokens]")
        if self.sample_temperature <= 0:
            raise ValueError(f"sample_temperature must be > 0, got {self.sample_temperature}")
        if self.sampler_merged_weights and self.sampler != "static":
            raise ValueError("sampler_merged_weights needs sampler='static' (generate samples from the model as it is)")
        if self.sampler_importance_clip_max < 1.0:
            raise ValueError(f"sampler_importance_clip_max must be >= 1, got {self.sampler_importance_clip_max}")
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise ValueError(f"baseline_momentum must lie in [0, 1), got {self.baseline_momentum}")
        _check_columns_kept(self)
        _resolve_bf16(self)
        _pin_memory_only_with_cuda(self)
        super().__post_init__()


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
            bf16 (defaults to "if the GPU supports it").
    """

    rewards: list[str] = field(
        default_factory=lambda: ["grounding", "format"],
        metadata={"help": f"Reward functions by name, among {sorted(REWARDS)} (weights: reward_weights)."},
    )
    output_dir: str | None = field(default="runs/grpo_ground", metadata={"help": "Where checkpoints and final models go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": RESUME_HELP})
    num_generations: int | None = field(default=4, metadata={"help": "Answers sampled per prompt (the group)."})
    max_completion_length: int | None = field(
        default=256, metadata={"help": "Token limit of an answer: ~25 tokens per box; truncated answers score their complete boxes."}
    )

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
