"""The hybrid trainer's performance switches: they change how fast a step runs and how much
memory it takes, not what it computes (merged sampling weights aside: their rounding is
corrected by importance weights, see ``vllm_importance_sampling_clip_max``).

Merged sampling weights are on by default where they fit (``sampler_merged_weights="auto"``).
The rule, in bytes (GB here are 10^9 bytes, as in BENCHMARKS.md)::

    resident + merged + reserve <= budget

- ``resident``: GPU memory allocated when the trainer is built (weights, adapters);
- ``merged``: the merged copies, ``out_features x in_features`` elements of the sampling
  dtype per mergeable LoRA linear (counted, not allocated);
- ``reserve`` (:func:`sampling_reserve_bytes`): what a hybrid step holds above the weights
  (activations, logits, the KV cache, the optimizer's states): :data:`RESERVE_GB_PER_ROW` per
  row of the largest forward pass (a training micro-batch's fused pass has ``B x (1 + K)``
  rows, an evaluation batch ``per_device_eval_batch_size``), at least :data:`MIN_RESERVE_GB`;
- ``budget`` (:func:`memory_budget_bytes`): ``sampler_memory_budget_gb``; unset, 16 GB for a
  4-bit base (the budget QLoRA is chosen for) and the GPU's memory otherwise.

Why these numbers (``benchmarks/step_runs/``: the 8B model, batch 8, 448 px images, 64-token
answers, rows of ~414 tokens): the hybrid step's peak above the resident weights was 4.47 GB
(QLoRA) and 5.41 GB (16-bit LoRA) at 16 rows (K = 1), 11.9 and 13.8 GB at 40 rows (K = 4):
0.28-0.34 GB a row and no fixed part; the merged copies (13.9 GB: the attention and MLP
linears in bf16) added 14.4 GB. 0.5 GB a row leaves ~45 % headroom, enough for rows up to
~600 tokens (about 12 boxes an answer); crowded answers need more (30 boxes, rows of 1,269
tokens: 0.83 GB a row), and there the budget or an explicit ``false`` decides. The 4 GB floor
covers what a small batch does not scale down: the CUDA context and the allocator's slack,
which ``memory_allocated`` does not count. So the 8B QLoRA model (6.6 + 13.9 + 4 GB > 16 GB)
stays off, and 16-bit LoRA (17.7 + 13.9 + 8 GB at batch 8) is on for an H200, off for a 24 GB
GPU. Applied by :func:`trl_ground.train.merged_weights_choice.choose_merged_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..sampling import SAMPLER_NAMES

__all__ = [
    "AUTO",
    "GB",
    "MIN_RESERVE_GB",
    "QLORA_MEMORY_BUDGET_GB",
    "RESERVE_GB_PER_ROW",
    "SAMPLER_NAMES",
    "PerformanceSettings",
    "merged_weights_fit",
    "memory_budget_bytes",
    "sampling_reserve_bytes",
    "true_false_or_auto",
]

AUTO = "auto"
GB = 10**9
QLORA_MEMORY_BUDGET_GB = 16.0  # the project's QLoRA target: the 8B hybrid step within 16 GB
RESERVE_GB_PER_ROW = 0.5
MIN_RESERVE_GB = 4.0
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


def sampling_reserve_bytes(rows: int) -> int:
    """The memory a hybrid step needs above the weights and the merged copies, for a step
    whose largest forward pass has ``rows`` rows: :data:`RESERVE_GB_PER_ROW` each, at least
    :data:`MIN_RESERVE_GB` (the module's docstring says why)."""
    return round(max(MIN_RESERVE_GB, RESERVE_GB_PER_ROW * rows) * GB)


def memory_budget_bytes(budget_gb: float | None, *, base_in_4bit: bool, device_total_bytes: int) -> int:
    """The peak the auto rule must respect: ``budget_gb`` when given; else
    :data:`QLORA_MEMORY_BUDGET_GB` for a 4-bit base, the device's memory for any other."""
    if budget_gb is not None:
        return round(budget_gb * GB)
    return round(QLORA_MEMORY_BUDGET_GB * GB) if base_in_4bit else device_total_bytes


def merged_weights_fit(resident_bytes: int, merged_bytes: int, reserve_bytes: int, budget_bytes: int) -> bool:
    """The memory rule of ``sampler_merged_weights="auto"``: what is held at the start, the
    merged copies and the step's reserve together within the budget."""
    return resident_bytes + merged_bytes + reserve_bytes <= budget_bytes


@dataclass
class PerformanceSettings:
    """How the hybrid trainer samples and scores its answers, fast. Every field is a YAML key and
    a CLI flag of ``trl-ground-sft``; in Python it is ``GroundingSFTConfig(performance=...)``
    (an object or a dict).

    Parameters:
        sampler (`str`, defaults to `"static"`):
            ``"static"``: static KV cache with the decode step replayed from a CUDA graph;
            ``"generate"``: plain ``model.generate``; ``"speculative"``: drafts from each
            prompt's target answer verified in blocks of ``speculative_block`` tokens (exact
            samples in fewer decode steps; its verify step compiled and graph-captured like
            the static sampler's). Chosen once (:func:`trl_ground.sampling.samplers.make_sampler`):
            under FSDP / ZeRO-3 every choice samples with ``generate``, with a warning.
        pack_samples (`bool`, defaults to `False`):
            Shared-prefix packing of the fused pass: each prompt once, followed by its target
            and its K answers under a block attention mask (:mod:`trl_ground.loss.packing`); same
            loss and gradients for 0.63x the tokens at K = 1 (0.37x at K = 4) on the step
            benchmark's shape, and the images through the vision tower once. Needs
            ``attn_implementation="sdpa"``. Not yet timed on a GPU.
        sampler_merged_weights (`bool` or `"auto"`, defaults to `"auto"`):
            Sample with each LoRA linear merged into one dense matrix (base dequantized when
            4-bit), refreshed every sampling step: fewer kernels and bytes per decode step
            for one dense copy of the adapted linears (~14 GB for the 8B model, +14-16 GB peak
            measured); :mod:`trl_ground.sampling.merged_weights`. Its rounding makes the samples come
            from a slightly different model, corrected by truncated importance weights.
            ``"auto"`` turns it on, once when the trainer is built, for a LoRA model on one
            CUDA GPU (no FSDP / ZeRO-3) with the static or speculative sampler, when the memory allocated then
            + the merged copies + a reserve of 0.5 GB per row of the step's forward pass
            (``B x (1 + K)``; at least 4 GB) fits ``sampler_memory_budget_gb``; the module's
            docstring gives the figures. ``True`` refuses a model without LoRA linears to merge.
        sampler_memory_budget_gb (`float` or `None`, defaults to `None`):
            The peak GPU memory (GB, 10^9 bytes) that ``sampler_merged_weights="auto"``
            respects; unset: 16 GB for a 4-bit base (what QLoRA is chosen for), the GPU's
            memory otherwise.
        sampler_compile (`bool`, defaults to `False`):
            Run the decode step (the speculative verify step) through ``torch.compile`` before
            capturing it in a CUDA graph (:class:`trl_ground.sampling.static.DecodeGraphs`): fuses the
            norms, rotary embedding, residual adds and casts of each layer. CUDA only; the
            first step of each shape compiles (seconds to a minute); a step that cannot be
            compiled runs without it, with one warning.
        speculative_block (`int`, defaults to `4`):
            Draft tokens verified per decode step by the speculative sampler.
    """

    sampler: str = field(
        default="static",
        metadata={"help": "static (static KV cache + CUDA-graph decode step), generate (plain model.generate) or "
                  "speculative (drafts from the target answer, verified in blocks of --speculative-block tokens)."},
    )
    pack_samples: bool = field(
        default=False,
        metadata={"help": "Fused pass with each prompt once, its target and answers after it (same maths, fewer tokens; sdpa only)."},
    )
    # A switch that also takes "auto": the metadata gives the parser its values (GroundingParser
    # reads it), and the flag alone means true.
    sampler_merged_weights: bool | Literal["auto"] = field(
        default=AUTO,
        metadata={
            "help": "Sample with each LoRA linear merged into one dense matrix: faster decoding, costs a dense copy of the "
                    f"adapted linears (~14 GB for the 8B model). auto: on for a LoRA model on one GPU (no FSDP / ZeRO-3) "
                    f"with the static or speculative sampler when memory in use at start + the merged copies + {RESERVE_GB_PER_ROW:g} GB per "
                    f"row of the step (batch x (1 + num_generations), at least {MIN_RESERVE_GB:g} GB) fits "
                    "sampler_memory_budget_gb.",
            "type": true_false_or_auto,
            "nargs": "?",
            "const": True,
        },
    )
    sampler_memory_budget_gb: float | None = field(
        default=None,
        metadata={"help": "Peak GPU memory (GB, 10^9 bytes) within which sampler_merged_weights auto must fit."},
    )
    sampler_compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the decode step before capturing it in a CUDA graph (CUDA only; compiles once per shape)."},
    )
    speculative_block: int = field(
        default=4,
        metadata={"help": "Draft tokens verified per decode step by the speculative sampler."},
    )

    def __post_init__(self):
        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {self.sampler!r}")
        try:
            self.sampler_merged_weights = true_false_or_auto(self.sampler_merged_weights)
        except ValueError as err:
            raise ValueError(f"sampler_merged_weights: {err}") from None
        if self.sampler_merged_weights is True and self.sampler == "generate":
            raise ValueError("sampler_merged_weights needs sampler='static' or 'speculative' (generate samples from the model as it is)")
        if self.sampler_compile and self.sampler == "generate":
            raise ValueError("sampler_compile needs sampler='static' or 'speculative' (generate runs its own decode loop)")
        if self.speculative_block < 1:
            raise ValueError(f"speculative_block must be >= 1, got {self.speculative_block}")
        if self.sampler_memory_budget_gb is not None and not self.sampler_memory_budget_gb > 0:
            raise ValueError(f"sampler_memory_budget_gb must be > 0 (or unset), got {self.sampler_memory_budget_gb}")
