"""The hybrid trainer's performance switches: they change how fast a step runs and how much
memory it takes, not what it computes (merged sampling weights aside: their rounding is
corrected by importance weights, see ``vllm_importance_sampling_clip_max``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..sampling import SAMPLER_NAMES

__all__ = ["AUTO", "SAMPLER_NAMES", "PerformanceSettings", "true_false_or_auto"]

AUTO = "auto"
_TRUE = ("true", "t", "yes", "y", "on", "1")
_FALSE = ("false", "f", "no", "n", "off", "0")


def true_false_or_auto(value) -> bool | str:
    """``True``, ``False`` or ``"auto"``, from a Python value or its spelling in YAML or on the
    command line (``true`` / ``false`` / ``yes`` / ``no`` / ``1`` / ``0`` / ``auto``, any case).

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word == AUTO:
            return AUTO
        if word in _TRUE + _FALSE:
            return word in _TRUE
    raise ValueError(f"expected true, false or auto, got {value!r}")



@dataclass
class PerformanceSettings:
    """How the hybrid trainer samples and scores its answers, fast. Every field is a YAML key and
    a CLI flag of ``trl-ground-sft``; in Python it is ``GroundingSFTConfig(performance=...)``
    (an object or a dict).

    Parameters:
        sampler (`str`, defaults to `"static"`):
            ``"static"``: static KV cache with the decode step replayed from a CUDA graph;
            ``"generate"``: plain ``model.generate``; ``"speculative"``: drafts from each
            prompt's target answer verified in blocks (exact samples in fewer decode steps;
            eager, no CUDA graph yet). Chosen once (:func:`trl_ground.sampling.samplers.make_sampler`):
            under FSDP / ZeRO-3 every choice samples with ``generate``, with a warning.
        pack_samples (`bool`, defaults to `False`):
            Shared-prefix packing of the fused pass: each prompt once, followed by its target
            and its K answers under a block attention mask (:mod:`trl_ground.loss.packing`); same
            loss and gradients for 0.63x the tokens at K = 1 (0.37x at K = 4) on the step
            benchmark's shape, and the images through the vision tower once. Needs
            ``attn_implementation="sdpa"``. Not yet timed on a GPU.
        sampler_merged_weights (`bool` or `"auto"`, defaults to `False`):
            Sample with each LoRA linear merged into one dense matrix (base dequantized when
            4-bit), refreshed every sampling step: fewer kernels and bytes per decode step
            for one dense copy of the adapted linears (~14 GB for the 8B model, +14-16 GB peak
            measured); :mod:`trl_ground.sampling.merged_weights`. Its rounding makes the samples come
            from a slightly different model, corrected by truncated importance weights.
            ``"auto"``: off for now (a memory rule is to decide).
    """

    sampler: str = field(
        default="static",
        metadata={"help": "static (static KV cache + CUDA-graph decode step), generate (plain model.generate) or "
                  "speculative (drafts from the target answer, verified in blocks; eager)."},
    )
    pack_samples: bool = field(
        default=False,
        metadata={"help": "Fused pass with each prompt once, its target and answers after it (same maths, fewer tokens; sdpa only)."},
    )
    # A switch that also takes "auto": the metadata gives the parser its values (GroundingParser
    # reads it), and the flag alone means true.
    sampler_merged_weights: bool | Literal["auto"] = field(
        default=False,
        metadata={
            "help": "Sample with each LoRA linear merged into one dense matrix: faster decoding, costs a dense copy of the "
                    "adapted linears. auto: off for now.",
            "type": true_false_or_auto,
            "nargs": "?",
            "const": True,
        },
    )

    def __post_init__(self):
        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {self.sampler!r}")
        try:
            self.sampler_merged_weights = true_false_or_auto(self.sampler_merged_weights)
        except ValueError as err:
            raise ValueError(f"sampler_merged_weights: {err}") from None
        if self.sampler_merged_weights is True and self.sampler != "static":
            raise ValueError("sampler_merged_weights needs sampler='static' (generate samples from the model as it is)")
