"""Configuration: dataclasses parsed by TRL's ``TrlParser`` (a YAML file via ``--config``,
every key also a CLI flag that overrides it).

Three groups: :class:`~trl_ground.data.DataArguments` (where the data is, prompt modes),
:class:`ModelArguments` (which model, QLoRA / LoRA / full) and
:class:`GroundingSFTConfig` (TRL's ``SFTConfig`` plus the grounding loss). The seed's
flags work verbatim (``--batch-size``, ``--epochs``, ``--lr``, ``--model`` ...): they are
aliases of the TRL names, on the command line and as YAML keys.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field

from trl import SFTConfig, TrlParser

from rewards import MATCH_METHODS

from .data import DataArguments

__all__ = [
    "GRADIENT_MODES",
    "GroundingParser",
    "GroundingSFTConfig",
    "GroundingScoreArguments",
    "SeedTrainingDefaults",
    "ModelArguments",
    "parse_sft_args",
    "resolve_learning_rate",
]

GRADIENT_MODES = ("policy_gradient", "none")
SAMPLERS = ("static", "generate")
DEFAULT_MODEL = "unsloth/Qwen3-VL-8B-Instruct"


@dataclass
class ModelArguments:
    """Which model and how it is loaded and adapted."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Qwen3-VL model id or local directory.", "aliases": ["--model_name_or_path"]},
    )
    use_lora: bool = field(default=True, metadata={"help": "Train LoRA adapters (else full fine-tuning)."})
    load_in_4bit: bool = field(default=True, metadata={"help": "Load the base in 4-bit NF4 (QLoRA; needs LoRA and CUDA)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    finetune_vision_layers: bool = field(default=False, metadata={"help": "LoRA on the vision tower blocks."})
    finetune_language_layers: bool = field(default=True, metadata={"help": "LoRA on the language model."})
    finetune_attention_modules: bool = field(default=False, metadata={"help": "LoRA on attention (q/k/v/o)."})
    finetune_mlp_modules: bool = field(default=True, metadata={"help": "LoRA on the MLP (gate/up/down)."})
    adapter: str | None = field(default=None, metadata={"help": "Start from this trained LoRA adapter directory."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention kernel (sdpa, eager, flash_attention_2)."})
    build_tiny_model: bool = field(default=False, metadata={"help": "Demo: if `model` is missing, build the tiny offline Qwen3-VL there."})

    def __post_init__(self):
        if self.lora_r <= 0 or self.lora_alpha <= 0:
            raise ValueError(f"lora_r and lora_alpha must be positive, got {self.lora_r} and {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout}")
        if self.load_in_4bit and not self.use_lora:
            raise ValueError("load_in_4bit needs use_lora (4-bit weights cannot be trained directly); add --no-load-in-4bit")
        if self.use_lora and not (self.finetune_vision_layers or self.finetune_language_layers):
            raise ValueError("LoRA needs finetune_vision_layers or finetune_language_layers")
        if self.use_lora and self.finetune_language_layers and not (
            self.finetune_attention_modules or self.finetune_mlp_modules
        ):
            raise ValueError("LoRA on the language layers needs finetune_attention_modules or finetune_mlp_modules")


@dataclass
class SeedTrainingDefaults:
    """The seed's training defaults and flag names (aliases), shared by the SFT and GRPO
    configs; listed before TRL's config in the bases so that these fields win."""

    per_device_train_batch_size: int = field(default=2, metadata={"help": "Batch size per device.", "aliases": ["--batch-size", "--batch_size"]})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs.", "aliases": ["--epochs"]})
    learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate (default 2e-4 with LoRA, 2e-5 without).", "aliases": ["--lr"]}
    )
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "Gradient accumulation steps."})
    save_steps: float = field(default=100, metadata={"help": "Save a checkpoint every N steps."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep gt_boxes/class for the scores (must stay False)."})

    def _check_seed_defaults(self) -> None:
        """Validate, then fill what TRL's ``__post_init__`` expects (call before it)."""
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must stay False: the scores read the gt_boxes and class columns")
        if self.per_device_train_batch_size < 1:
            raise ValueError(f"per_device_train_batch_size must be >= 1, got {self.per_device_train_batch_size}")
        if self.bf16 is None and not self.fp16:
            self.bf16 = _bf16_available()  # TRL would turn it on everywhere; a CPU run would then fail
        if self.learning_rate is None:
            self.learning_rate = 2e-4  # placeholder until resolve_learning_rate knows about LoRA
            self._learning_rate_defaulted = True


@dataclass
class GroundingScoreArguments:
    """How an answer is scored: ``cost = a*iou_loss + b*fp + c*fn`` after matching (the
    hybrid loss; the GRPO grounding reward is its negative)."""

    iou_loss_weight: float = field(default=1.0, metadata={"help": "Weight a of iou_loss in the per-sample cost."})
    fp_loss_weight: float = field(default=0.5, metadata={"help": "Weight b of false positives."})
    fn_loss_weight: float = field(default=1.0, metadata={"help": "Weight c of false negatives."})
    iou_threshold: float = field(default=0.5, metadata={"help": "IoU at which a predicted box matches."})
    match_method: str = field(default="hungarian", metadata={"help": f"One of {MATCH_METHODS}."})
    label_aware_matching: bool = field(default=False, metadata={"help": "A box labelled with another class cannot match."})

    def _check_scores(self) -> None:
        if self.match_method not in MATCH_METHODS:
            raise ValueError(f"match_method must be one of {MATCH_METHODS}, got {self.match_method!r}")
        for name in ("iou_loss_weight", "fp_loss_weight", "fn_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in [0, 1], got {self.iou_threshold}")

    @property
    def score_weights(self) -> tuple[float, float, float]:
        return (self.iou_loss_weight, self.fp_loss_weight, self.fn_loss_weight)


@dataclass
class GroundingSFTConfig(GroundingScoreArguments, SeedTrainingDefaults, SFTConfig):
    """``trl.SFTConfig`` with the seed's defaults and the grounding loss settings."""

    output_dir: str = field(default="runs/sft_ground", metadata={"help": "Where checkpoints and final models go."})
    max_length: int | None = field(default=2048, metadata={"help": "Maximum tokens per example (prompt + answer)."})
    grounding_loss: bool = field(default=True, metadata={"help": "Add the grounding terms (off: plain SFT)."})
    grounding_gradient: str = field(
        default="policy_gradient",
        metadata={"help": f"One of {GRADIENT_MODES}: 'none' adds the terms as constants (the seed's literal behaviour)."},
    )
    samples_per_prompt: int = field(default=1, metadata={"help": "K answers sampled per prompt."})
    sample_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    sample_max_new_tokens: int = field(default=256, metadata={"help": "Token limit of a sampled answer."})
    sample_every_n_steps: int = field(default=1, metadata={"help": "Sample on every N-th optimizer step."})
    sample_min_new_tokens: int = field(default=0, metadata={"help": "Force at least this many tokens (benchmarks)."})
    sampler: str = field(
        default="static",
        metadata={"help": "'static': static KV cache + CUDA-graph decode step; 'generate': plain model.generate."},
    )
    sampler_nf4_kernel: bool = field(
        default=False, metadata={"help": "Experimental: Triton NF4 matmul in the decode step (slower today, see BENCHMARKS.md)."}
    )
    fuse_logprob_pass: bool = field(
        default=True, metadata={"help": "Score the sampled answers in the same forward pass as the SFT rows."}
    )
    baseline_momentum: float = field(default=0.9, metadata={"help": "Running-mean baseline momentum (used when K = 1)."})

    def __post_init__(self):
        if self.grounding_gradient not in GRADIENT_MODES:
            raise ValueError(f"grounding_gradient must be one of {GRADIENT_MODES}, got {self.grounding_gradient!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if not 0 <= self.sample_min_new_tokens <= self.sample_max_new_tokens:
            raise ValueError("sample_min_new_tokens must lie in [0, sample_max_new_tokens]")
        for name in ("samples_per_prompt", "sample_max_new_tokens", "sample_every_n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sample_temperature <= 0:
            raise ValueError(f"sample_temperature must be > 0, got {self.sample_temperature}")
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise ValueError(f"baseline_momentum must lie in [0, 1), got {self.baseline_momentum}")
        self._check_scores()
        self._check_seed_defaults()
        super().__post_init__()


def _bf16_available() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_learning_rate(config, model_args: ModelArguments) -> None:
    """The seed's default learning rate: 2e-4 with LoRA, 2e-5 for full fine-tuning."""
    if getattr(config, "_learning_rate_defaulted", False):
        config.learning_rate = 2e-4 if model_args.use_lora else 2e-5


def _aliases(dataclass_types) -> dict[str, str]:
    """``{alias: field name}`` for every ``--alias`` of the given dataclasses."""
    out = {}
    for dtype in dataclass_types:
        for f in dataclasses.fields(dtype):
            for alias in f.metadata.get("aliases", []):
                out[alias.lstrip("-").replace("-", "_")] = f.name
            out[f.name.replace("_", "-")] = f.name
    return out


class GroundingParser(TrlParser):
    """``TrlParser`` whose YAML keys may also be the seed's names (``batch_size``, ``lr``,
    ``epochs``, ``model``, or dashed forms); unknown keys fail with the list of them."""

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        aliases = _aliases(self.dataclass_types)
        renamed = {aliases.get(k, k): v for k, v in kwargs.items()}
        remaining = super().set_defaults_with_config(**renamed)
        if remaining:
            raise ValueError(f"unknown key(s) in the config file: {remaining[::2]}")
        return remaining


def parse_sft_args(argv=None, config_class=GroundingSFTConfig):
    """Parse ``argv`` (default ``sys.argv[1:]``) into ``(data_args, model_args, config)``
    (``config_class`` is :class:`GroundingSFTConfig` or the GRPO one).

    Raises ``ValueError`` (unknown keys, impossible values) before any model is loaded.
    """
    parser = GroundingParser((DataArguments, ModelArguments, config_class))
    argv = list(sys.argv[1:] if argv is None else argv)
    data_args, model_args, config = parser.parse_args_and_config(argv)
    resolve_learning_rate(config, model_args)
    return data_args, model_args, config
