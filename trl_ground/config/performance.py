"""The hybrid trainer's performance switches: they change how fast a step runs and how much
memory it takes, not what it computes (merged sampling weights aside: their rounding is
corrected by importance weights, see ``vllm_importance_sampling_clip_max``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sampling import SAMPLER_NAMES

__all__ = ["SAMPLER_NAMES", "PerformanceSettings"]


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
        sampler_merged_weights (`bool`, defaults to `False`):
            Sample with each LoRA linear merged into one dense matrix (base dequantized when
            4-bit), refreshed every sampling step: fewer kernels and bytes per decode step
            for one dense copy of the adapted linears (~14 GB for the 8B model, +14-16 GB peak
            measured); :mod:`trl_ground.sampling.merged_weights`. Its rounding makes the samples come
            from a slightly different model, corrected by truncated importance weights.
            With the static or the speculative sampler.
        sampler_compile (`bool`, defaults to `True`):
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
    sampler_merged_weights: bool = field(
        default=False,
        metadata={"help": "Sample with each LoRA linear merged into one dense matrix: faster decoding, costs a dense copy of the adapted linears."},
    )
    sampler_compile: bool = field(
        default=True,
        metadata={"help": "torch.compile the decode step before capturing it in a CUDA graph (CUDA only; compiles once per shape)."},
    )
    speculative_block: int = field(
        default=4,
        metadata={"help": "Draft tokens verified per decode step by the speculative sampler."},
    )

    def __post_init__(self):
        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {self.sampler!r}")
        if self.sampler_merged_weights and self.sampler == "generate":
            raise ValueError("sampler_merged_weights needs sampler='static' or 'speculative' (generate samples from the model as it is)")
        if self.speculative_block < 1:
            raise ValueError(f"speculative_block must be >= 1, got {self.speculative_block}")
