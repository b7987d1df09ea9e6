"""The model: loading Qwen3-VL for training (QLoRA, 16-bit LoRA, full), its fast paths, the tiny test model,
what a ``--model`` names."""

# Qwen3-VL's vision patch side and patches merged per side, for a model whose processor files
# are not at hand (here, not in ``qwen3vl``, so that reading them imports no torch)
PATCH_SIZE, MERGE_SIZE = 16, 2
