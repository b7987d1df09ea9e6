"""Load Qwen3-VL for training: QLoRA (4-bit NF4 base + LoRA), 16-bit LoRA, or full.

LoRA target modules come from the four seed flags: vision tower blocks
(``finetune_vision_layers``), and on the language model (``finetune_language_layers``)
attention ``q/k/v/o_proj`` (``finetune_attention_modules``) and MLP ``gate/up/down_proj``
(``finetune_mlp_modules``). With ``finetune_vision_layers`` the vision blocks' attention and
MLP projections are adapted too (``attn.qkv``, ``attn.proj``, ``mlp.linear_fc1/2``).
"""

from __future__ import annotations

import logging

import torch

from .compat import enable_activation_checkpointing
from .qwen3vl import use_packed_vision_attention

__all__ = [
    "check_4bit_device",
    "compute_dtype", "count_parameters", "load_model", "load_processor", "lora_target_modules", "prepare_quantized_for_training",
    "weight_dtype",
]

logger = logging.getLogger(__name__)

_LANGUAGE_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_LANGUAGE_MLP = ("gate_proj", "up_proj", "down_proj")
_VISION = ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2")


def lora_target_modules(model_args) -> str:
    """A PEFT ``target_modules`` regex over module names for the four seed flags."""
    parts = []
    if model_args.finetune_language_layers:
        names = (_LANGUAGE_ATTENTION if model_args.finetune_attention_modules else ()) + (
            _LANGUAGE_MLP if model_args.finetune_mlp_modules else ()
        )
        if names:
            parts.append(r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.(" + "|".join(names) + ")")
    if model_args.finetune_vision_layers:
        parts.append(r"model\.visual\.blocks\.\d+\.(" + "|".join(n.replace(".", r"\.") for n in _VISION) + ")")
    return "(" + "|".join(parts) + ")$"


def check_4bit_device(option: str, remedy: str, use_cpu: bool = False) -> None:
    """4-bit loading (bitsandbytes NF4) needs a CUDA GPU: a ``ValueError`` line naming the
    ``option`` that asked for it and the ``remedy`` when there is none."""
    if use_cpu or not torch.cuda.is_available():
        raise ValueError(f"{option} needs a CUDA GPU (bitsandbytes 4-bit) and none is available: {remedy}")


def compute_dtype() -> torch.dtype:
    """bf16 on a GPU that supports it, else float32 (CPU training and tests)."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def weight_dtype(model_args) -> torch.dtype:
    """The dtype the model's weights are loaded in for training.

    Full fine-tuning keeps fp32 master weights, and the Trainer's ``bf16`` / ``fp16`` run the
    compute under autocast (mixed precision): an AdamW step of ``lr`` moves a weight by about
    ``lr``, which bf16 cannot represent next to most weights (its spacing at 0.2 is ~1e-3, so
    a step of 5e-5 rounds away). With LoRA the base is frozen and stays in :func:`compute_dtype`
    (bf16 on a GPU); the adapters are fp32 (PEFT's default)."""
    return compute_dtype() if model_args.use_lora else torch.float32


def load_processor(model_id: str, max_pixels: int | None = None, min_pixels: int | None = None):
    """``AutoProcessor`` for ``model_id`` with left padding (for generation) and the image
    size limits of the data (so images are never resized twice)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_id)
    if max_pixels is not None:
        processor.image_processor.size = {"longest_edge": max_pixels, "shortest_edge": min_pixels or 32 * 32}
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(model_args, gradient_checkpointing: bool = True, device_map=None):
    """The model ready for training: quantized and k-bit-prepared for QLoRA, with LoRA
    adapters (new, or ``model_args.adapter`` when given) or fully trainable.

    Returns a ``PeftModel`` when ``use_lora``, else the ``Qwen3VLForConditionalGeneration``.
    """
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    dtype = weight_dtype(model_args)
    kwargs = {"dtype": dtype, "attn_implementation": model_args.attn_implementation}
    if model_args.load_in_4bit:
        if not torch.cuda.is_available():
            raise RuntimeError("load_in_4bit needs a CUDA GPU (bitsandbytes); use --no-load-in-4bit on a CPU")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_storage=torch.bfloat16,
        )
        kwargs["device_map"] = device_map if device_map is not None else {"": torch.cuda.current_device()}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForImageTextToText.from_pretrained(model_args.model, **kwargs)
    if model_args.packed_vision_attention:
        use_packed_vision_attention(model)

    if model_args.load_in_4bit:
        prepare_quantized_for_training(model, gradient_checkpointing)
    elif gradient_checkpointing:
        # (Trainer.train would turn it on too; a step run outside train(), as in the step
        # benchmark, measured 16-bit LoRA without it: 42.5 GB SFT, 142 GB at K = 4.)
        enable_activation_checkpointing(model, use_reentrant=False)
    if model_args.use_lora:
        model = _add_lora(model, model_args)
    _log_trainable(model)
    return model


def prepare_quantized_for_training(model, gradient_checkpointing: bool = True):
    """Freeze a 4-bit model and turn on gradient checkpointing, keeping every dtype.

    PEFT's ``prepare_model_for_kbit_training`` also upcasts every non-quantized weight to
    fp32; for Qwen3-VL-8B that is the 1.2 B-parameter embedding and LM head: +5 GB, and an
    fp32 LM head read at every step and every sampled token (measured in BENCHMARKS.md).
    LoRA weights stay fp32 (PEFT's default) and the compute runs under bf16 autocast.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        enable_activation_checkpointing(model, use_reentrant=False)
        model.enable_input_require_grads()
    return model


def _add_lora(model, model_args):
    from peft import LoraConfig, PeftModel, get_peft_model

    if model_args.adapter:
        logger.info("continuing from adapter %s", model_args.adapter)
        return PeftModel.from_pretrained(model, model_args.adapter, is_trainable=True)
    config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=lora_target_modules(model_args),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def count_parameters(model) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (4-bit weights counted as stored elements x 2)."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def _log_trainable(model) -> None:
    trainable, total = count_parameters(model)
    msg = f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.4f}%)"
    logger.info(msg)
    print(msg, flush=True)
