"""A tiny Qwen3-VL with random weights and an offline processor, built in seconds on a CPU.

The directory it writes loads with ``Qwen3VLForConditionalGeneration.from_pretrained`` and
``AutoProcessor.from_pretrained`` like a real checkpoint, so the demo and the tests run the
real code paths with no download. The architecture is Qwen3-VL's (vision tower with
deepstack, M-RoPE text decoder), only small. The tokenizer is the project's own byte-level
tokenizer with no merges: every byte is a token (so every digit is its own token, as in
Qwen's), plus Qwen's special tokens, and a ChatML chat template written here.

    python -m trl_ground.model.tiny --out runs/tiny-qwen3vl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["ANSWER_TOKENS", "CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_processor", "build_tiny_qwen3vl", "tiny_config"]

# Qwen's special tokens, in Qwen's order (ids follow the 256 byte tokens here).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Pieces of the answer's JSON skeleton that ``word_tokens`` can make single tokens (the real
# Qwen tokenizer spends ~25 tokens on a box; bytes alone spend ~50; with these, ~14). Digits
# stay one token each, as in Qwen's tokenizer.
ANSWER_TOKENS = ('[{"bbox_2d": [', '{"bbox_2d": [', '], "label": "', '"}, ', '"}]', ", ")

# ChatML with Qwen-VL's image placeholders; the generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _byte_level_tokenizer():
    """A ``tokenizers`` byte-level BPE with no merges: one token per byte, then specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def build_tiny_processor(
    image_size: int = 64 * 64 * 16, min_pixels: int = 32 * 32, word_tokens: tuple[str, ...] = (), patch_size: int = 16
):
    """The offline ``Qwen3VLProcessor``: project tokenizer + Qwen3-VL image/video processors.

    ``image_size`` is the processor's ``max_pixels`` (its ``size.longest_edge``);
    ``word_tokens`` are strings made single tokens (e.g. :data:`ANSWER_TOKENS`, class names);
    ``patch_size`` is the vision patch side (Qwen3-VL's is 16; 8 gives a 128 px image the 64
    visual tokens of a 256 px one, at a quarter of the pixels to process).
    """
    from transformers import AddedToken, PreTrainedTokenizerFast, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS,
        model_max_length=32768,
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.add_tokens([AddedToken(w, normalized=False, special=False) for w in word_tokens])
    size = {"longest_edge": image_size, "shortest_edge": min_pixels}
    image_processor = Qwen2VLImageProcessor(
        size=size, patch_size=patch_size, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    video_processor = Qwen3VLVideoProcessor(size=size, patch_size=patch_size, temporal_patch_size=2, merge_size=2)
    return Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=CHAT_TEMPLATE
    )


def tiny_config(tokenizer, hidden: int = 64, layers: int = 2, vision_hidden: int = 32, vision_depth: int = 2, patch_size: int = 16):
    """A ``Qwen3VLConfig`` of the real architecture at toy size (deepstack on every vision block)."""
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = 4
    head_dim = hidden // heads
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]  # M-RoPE (t, h, w) split of head_dim/2
    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=2,
            head_dim=head_dim,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section, "mrope_interleaved": True},
            tie_word_embeddings=True,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=vision_hidden,
            intermediate_size=vision_hidden * 2,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=256,
            deepstack_visual_indexes=list(range(vision_depth)),
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_qwen3vl(
    out_dir,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    image_size: int = 64 * 64 * 16,
    vision_hidden: int = 32,
    vision_depth: int = 2,
    word_tokens: tuple[str, ...] = (),
    patch_size: int = 16,
) -> Path:
    """Write a tiny random Qwen3-VL (model + processor + generation config) to ``out_dir``.

    ``word_tokens``, ``patch_size``: see :func:`build_tiny_processor`. Returns the
    directory. Deterministic for a seed.
    """
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_tiny_processor(image_size=image_size, word_tokens=word_tokens, patch_size=patch_size)
    config = tiny_config(
        processor.tokenizer, hidden=hidden, layers=layers, vision_hidden=vision_hidden, vision_depth=vision_depth, patch_size=patch_size
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = processor.tokenizer.pad_token_id
    model.generation_config = GenerationConfig(eos_token_id=[eos], pad_token_id=pad, bos_token_id=pad, do_sample=False)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "TINY_MODEL.json").write_text(json.dumps({"seed": seed, "hidden": hidden, "layers": layers}) + "\n")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write a tiny random Qwen3-VL with an offline processor.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args(argv)
    print(build_tiny_qwen3vl(args.out, seed=args.seed, hidden=args.hidden, layers=args.layers))


if __name__ == "__main__":
    main()
