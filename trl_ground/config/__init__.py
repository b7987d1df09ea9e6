"""Every configuration dataclass of the project, and the one parser of the entry points.

- :class:`DataArguments` (``config/data.py``): where the data is, prompt modes.
- :class:`ModelArguments` (``config/model.py``): which model, QLoRA / LoRA / full.
- :class:`rewards.ScoringSettings` (re-exported): how an answer is scored.
- :class:`PerformanceSettings` (``config/performance.py``): the hybrid trainer's speed
  switches (sampler, packed log-prob pass, merged sampling weights and the memory rule that
  turns them on by default), the SFT config's ``performance``.
- :class:`GroundingSFTConfig`, :class:`GroundingGRPOConfig` (``config/training.py``): TRL's
  trainer configs plus the grounding loss and sampling options (TRL GRPO's names; the old
  names in :data:`RENAMED` still work, with a warning).
- :func:`parse_args` (``config/parser.py``): YAML + CLI into the four groups.

The trainer configs import TRL; they are loaded on first use so that the light groups
(data, model) import quickly.
"""

from rewards import ScoringSettings

from .data import PROMPT_MODES, DataArguments
from .model import DEFAULT_MODEL, ModelArguments
from .performance import SAMPLER_NAMES, PerformanceSettings
from .renamed import RENAMED

__all__ = [
    "CREDITS",
    "DEFAULT_MODEL",
    "GRADIENT_MODES",
    "POLICY_LOSS_TYPES",
    "PROMPT_MODES",
    "RENAMED",
    "SAMPLER_NAMES",
    "DataArguments",
    "GroundingGRPOConfig",
    "GroundingSFTConfig",
    "ModelArguments",
    "PerformanceSettings",
    "ScoringSettings",
    "parse_args",
]

_LAZY = {
    "CREDITS": "training",
    "GRADIENT_MODES": "training",
    "POLICY_LOSS_TYPES": "training",
    "GroundingGRPOConfig": "training",
    "GroundingSFTConfig": "training",
    "parse_args": "parser",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
