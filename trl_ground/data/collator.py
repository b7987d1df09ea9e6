"""The batch the grounding trainer needs: TRL's vision SFT batch plus the ground truth.

TRL's ``DataCollatorForVisionLanguageModeling`` returns only its own keys, so this wraps it
(never forks it): the extra columns are taken off the examples first and put back on the
batch as ``gt_boxes`` (a list of ``ndarray[M_i, 4]``, xyxy in [0, 1]) and ``query_class``.
It also adds what the model would otherwise compute row by row or image by image on the
main process, here in the data-loader workers: the M-RoPE ``position_ids``
(:mod:`trl_ground.model.qwen3vl`) and the vision tower's ``image_position_ids`` (transformers' own
``get_vision_position_ids``, which Qwen3-VL accepts precomputed).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.qwen3vl import with_positions

__all__ = ["GROUNDING_KEYS", "GroundingCollator"]

# Batch keys that are not model inputs; the trainer pops them before the forward pass.
GROUNDING_KEYS = ("gt_boxes", "query_class")
_EXTRA_COLUMNS = ("gt_boxes", "class", "mode", "is_unique", "image_id", "record")


class GroundingCollator:
    """``collator(examples) -> batch`` for :class:`~trl_ground.train.trainer.GroundingSFTTrainer`.

    Labels cover the answer and its closing ``<|im_end|>``; the newline the chat template
    writes after it is masked (the model never has to learn what follows the end token).
    """

    def __init__(self, processor, max_length: int | None = None):
        from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

        self.sft_collator = DataCollatorForVisionLanguageModeling(processor, max_length=max_length, completion_only_loss=True)
        self.im_end_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.spatial_merge_size = getattr(processor.image_processor, "merge_size", None)

    def __call__(self, examples: list[dict]) -> dict:
        examples = [dict(ex) for ex in examples]  # TRL's collator edits its examples
        extras = [{k: ex.pop(k, None) for k in _EXTRA_COLUMNS} for ex in examples]
        batch = with_positions(self.sft_collator(examples), self.spatial_merge_size)
        if batch.get("image_grid_thw") is not None and self.spatial_merge_size:
            from transformers.vision_utils import get_vision_position_ids

            batch["image_position_ids"] = get_vision_position_ids(batch["image_grid_thw"], self.spatial_merge_size)
        self._mask_after_end(batch["labels"])
        batch["gt_boxes"] = [np.asarray(e["gt_boxes"] or [], dtype=np.float64).reshape(-1, 4) for e in extras]
        batch["query_class"] = [e["class"] for e in extras]
        return batch

    def _mask_after_end(self, labels: torch.Tensor) -> None:
        """-100 on every label after the last ``<|im_end|>`` of each row (in place)."""
        is_end = labels == self.im_end_id
        after = is_end.flip(1).cumsum(1).flip(1) == 0  # no end token at or after this position
        has_end = is_end.any(dim=1, keepdim=True)
        labels[after & has_end] = -100
