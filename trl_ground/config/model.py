"""Which model is trained and how it is loaded and adapted (QLoRA, 16-bit LoRA, full)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_MODEL", "ModelArguments"]

DEFAULT_MODEL = "unsloth/Qwen3-VL-8B-Instruct"


@dataclass
class ModelArguments:
    """Which model and how it is loaded and adapted. Every field is a YAML key and a CLI flag.

    Parameters:
        model (`str`, defaults to `"unsloth/Qwen3-VL-8B-Instruct"`):
            Qwen3-VL model id or local directory (alias ``--model_name_or_path``).
        use_lora (`bool`, defaults to `True`):
            Train LoRA adapters; ``False`` trains every weight (full fine-tuning).
        load_in_4bit (`bool`, defaults to `True`):
            Load the base in 4-bit NF4 (QLoRA; needs ``use_lora`` and a CUDA GPU).
        lora_r (`int`, defaults to `16`), lora_alpha (`int`, defaults to `16`), lora_dropout
            (`float`, defaults to `0.0`): the LoRA adapters.
        finetune_vision_layers (`bool`, defaults to `False`), finetune_language_layers (`bool`,
            defaults to `True`), finetune_attention_modules (`bool`, defaults to `False`),
            finetune_mlp_modules (`bool`, defaults to `True`): where the adapters go (the
            reference script's four switches).
        adapter (`str` or `None`, defaults to `None`):
            Start from this trained LoRA adapter directory (e.g. an SFT run's ``final/``).
        attn_implementation (`str`, defaults to `"sdpa"`):
            Attention kernel: ``sdpa``, ``eager`` or ``flash_attention_2``.
        packed_vision_attention (`bool`, defaults to `True`):
            With ``sdpa``: one attention call per vision block for a batch of equal-size
            images instead of one per image (:mod:`trl_ground.model.qwen3vl`).
        build_tiny_model (`bool`, defaults to `False`):
            Demo: if ``model`` is a missing directory, build the tiny offline Qwen3-VL there.
    """

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "Qwen3-VL model id or local directory."})
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
    packed_vision_attention: bool = field(default=True, metadata={"help": "One vision attention call per block for equal-size images."})
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
        if self.adapter and not self.use_lora:
            raise ValueError("adapter needs use_lora (an adapter is LoRA weights)")
