"""Settings of the learning benchmark (``trl-ground-bench-learning``)."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields, replace

__all__ = ["BENCH_BRANCHES", "LearningBenchSettings"]

# old setting names -> the trainers' (TRL's) names
RENAMED_SETTINGS = {"samples_per_prompt": "num_generations", "max_new_tokens": "max_completion_length"}

# Branches the benchmark knows (what each trains: trl_ground/benchmarks/learning.py).
BENCH_BRANCHES = ("sft", "literal", "shuffled", "hybrid_counts", "hybrid", "hybrid_sequence", "grpo")

# Settings that define the data and the model: a warm start is reusable only with these equal.
WARM_KEYS = ("n_images", "image_size", "max_objects", "negative_fraction", "val_images", "test_images", "data_seed",
             "system_prompt", "query_template", "hidden", "layers", "vision_hidden", "vision_depth", "patch_size", "word_tokens")


@dataclass
class LearningBenchSettings:
    """Every knob of the learning benchmark; ``--set KEY=VALUE`` (a JSON value) overrides one.

    Parameters:
        > Data (synthetic scenes: ``trl_ground.data.synthetic``)

        n_images (`int`): scenes in all; ``val_images`` and ``test_images`` of them are held out.
        image_size (`int`): side in pixels (with ``patch_size`` 8, 128 px give 16 x 16 patches,
            8 x 8 = 64 visual tokens after merging).
        max_objects (`int`): 0..max_objects objects of 4 classes per scene.
        negative_fraction (`float`): share of training images that also get a query for an absent class.
        val_images, test_images (`int`): held-out scenes; each is asked its primary query and
            one negative query. Branch settings are chosen on validation, never on test.
        data_seed (`int`): the seed the scenes are drawn with.
        system_prompt, query_template (`str`): the words of the conversation (short: the tiny
            model's tokenizer spends a token per character outside ``word_tokens``).
        data_workers (`int`): processes drawing the scenes.

        > Model (a Qwen3-VL of the real architecture, random init: ``trl_ground.model.tiny``)

        hidden, layers, vision_hidden, vision_depth (`int`): sizes.
        patch_size (`int`): vision patch side (Qwen3-VL's is 16; 8 quarters the pixels to
            process for the same number of visual tokens).
        word_tokens (`bool`): JSON skeleton pieces and class names as single tokens (~14
            tokens a box instead of ~50).

        > Warm start (plain SFT from random init, shared by every branch)

        warm_steps (`int`), warm_batch (`int`), warm_lr (`float`), warm_warmup_steps (`int`),
        warm_min_lr_rate (`float`: cosine decay to this fraction of ``warm_lr``),
        warm_weight_decay (`float`), warm_seconds (`float`: a guard; the schedule assumes
        ``warm_steps``), warm_eval_every (`int`), warm_workers (`int`: data-loader processes).
        warm_lr_scheduler (`str`): ``"cosine_with_min_lr"`` (decays to ``warm_min_lr_rate``) or
            ``"constant_with_warmup"`` (a warm start that stops while SFT still learns fast).
        warm_snapshots (`list[int]`): steps at which the warm model is also saved, as
            ``warm_step_N/`` in the work folder (a warm model ``--warm-from`` accepts): earlier
            branching points, to find one from which SFT still gains within the branch budget.

        > Branches (each from the warm start, the same data order per seed)

        branches (`list[str]`): among :data:`BENCH_BRANCHES`.
        seeds (`list[int]`): one run per branch and seed.
        branch_steps, branch_batch (`int`), branch_lr (`float`, constant), branch_seconds
        (`float`: a guard), eval_every (`int`: validation curve), num_generations (`int`:
        K, also GRPO's group size), max_completion_length (`int`: also the evaluation's
        answer limit), temperature (`float` or `None`: the trainers' default).
        (``samples_per_prompt`` and ``max_new_tokens``, the old names, are read too.)
        variants (`dict`): extra branches ``{name: {"base": branch, "flags": [...]}}``.
        tune (`dict`): ``{branch: [[flags...], ...]}``: candidate settings of a branch (its LR,
            the policy term's weight, ...), each trained once with ``tune_seed`` before the
            seeds; the candidate with the best final **validation** F1@0.5 is then the
            branch's setting for every seed (test data is never looked at).
        tune_seed (`int`): the seed of the tuning runs (not one of ``seeds``).
        extra_flags (`list[str]`): flags appended to every branch's (e.g. ``["--sampler", "generate"]``).
        jobs (`int`): runs at once (separate processes sharing the GPU).
        timing_steps (`int`): after the branches, each branch kind runs this many steps alone
            to measure its time per step (the equal-wall-clock comparison); 0 to skip.

        > Evaluation

        eval_batch (`int`): prompts per greedy generation batch.
        bootstrap (`int`): resamples of the paired bootstrap (prompts x seeds) behind each
            interval of a branch's difference to SFT.
    """

    n_images: int = 24000
    data_seed: int = 1234
    image_size: int = 128
    max_objects: int = 4
    negative_fraction: float = 0.25
    val_images: int = 150
    test_images: int = 300
    system_prompt: str = "Locate objects."
    query_template: str = "Find every {class}. Answer [] or JSON boxes 0-1000."
    data_workers: int = 16
    hidden: int = 384
    layers: int = 6
    vision_hidden: int = 192
    vision_depth: int = 4
    patch_size: int = 8
    word_tokens: bool = True
    warm_steps: int = 6000
    warm_batch: int = 128
    warm_lr: float = 1e-3
    warm_warmup_steps: int = 300
    warm_min_lr_rate: float = 0.05
    warm_weight_decay: float = 0.05
    warm_seconds: float = 540.0
    warm_eval_every: int = 500
    warm_workers: int = 12
    warm_lr_scheduler: str = "cosine_with_min_lr"
    warm_snapshots: list = field(default_factory=list)
    branches: list = field(default_factory=lambda: ["sft", "hybrid", "shuffled", "literal"])
    seeds: list = field(default_factory=lambda: [0, 1, 2, 3, 4])
    branch_steps: int = 150
    branch_batch: int = 16
    branch_lr: float = 5e-5
    branch_seconds: float = 480.0
    eval_every: int = 50
    num_generations: int = 4
    max_completion_length: int = 96
    temperature: float | None = None
    variants: dict = field(default_factory=dict)
    tune: dict = field(default_factory=dict)
    tune_seed: int = 100
    extra_flags: list = field(default_factory=list)
    jobs: int = 18
    timing_steps: int = 20
    eval_batch: int = 300
    bootstrap: int = 2000

    def __post_init__(self):
        unknown = [b for b in self.branches if b not in BENCH_BRANCHES]
        if unknown:
            raise ValueError(f"unknown branches {unknown}; branches: {list(BENCH_BRANCHES)}")
        for name, spec in self.variants.items():
            if not isinstance(spec, dict) or spec.get("base") not in BENCH_BRANCHES or not isinstance(spec.get("flags", []), list):
                raise ValueError(f"variant {name!r} must be {{'base': one of {list(BENCH_BRANCHES)}, 'flags': [...]}}")
        for name, candidates in self.tune.items():
            if name not in self.branches and name not in self.variants:
                raise ValueError(f"tune names {name!r}, which is neither a branch nor a variant of this run")
            if not isinstance(candidates, list) or not candidates or not all(isinstance(c, list) for c in candidates):
                raise ValueError(f"tune[{name!r}] must be a non-empty list of flag lists")
        if self.warm_lr_scheduler not in ("cosine_with_min_lr", "constant_with_warmup"):
            raise ValueError(f"warm_lr_scheduler must be cosine_with_min_lr or constant_with_warmup, got {self.warm_lr_scheduler!r}")
        if "{class}" not in self.query_template:
            raise ValueError("query_template must contain {class}")
        for name in ("n_images", "warm_batch", "branch_batch", "num_generations", "max_completion_length", "jobs", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_images + self.test_images >= self.n_images:
            raise ValueError("val_images + test_images must leave training images")

    @classmethod
    def quick(cls) -> LearningBenchSettings:
        """A few steps of everything on a CPU (what the tests run)."""
        return cls(n_images=40, image_size=64, max_objects=3, negative_fraction=1.0, val_images=4, test_images=4, data_workers=1,
                   hidden=64, layers=2, vision_hidden=32, vision_depth=2, patch_size=16, warm_steps=2, warm_batch=4, warm_warmup_steps=1,
                   warm_seconds=600, warm_eval_every=2, warm_workers=0, seeds=[0], branch_steps=2, branch_batch=4,
                   branch_lr=5e-4, branch_seconds=600, eval_every=2, num_generations=2, max_completion_length=24, jobs=1,
                   timing_steps=1, eval_batch=8)

    @classmethod
    def from_dict(cls, values: dict) -> LearningBenchSettings:
        """Settings from ``as_dict()``'s output (a run's ``settings.json``), the old names read too."""
        return cls(**{_renamed(key): value for key, value in values.items()})

    def override(self, assignments: list[str]) -> LearningBenchSettings:
        """A copy with ``KEY=VALUE`` assignments applied (VALUE is JSON, or a plain string)."""
        known = {f.name for f in fields(self)}
        changes = {}
        for item in assignments:
            key, sep, value = item.partition("=")
            key = _renamed(key)
            if not sep or key not in known:
                raise ValueError(f"unknown setting {key!r} in {item!r}; settings: {sorted(known)}")
            try:
                changes[key] = json.loads(value)
            except json.JSONDecodeError:
                changes[key] = value
        return replace(self, **changes)

    def warm_fingerprint(self) -> dict:
        """The settings a warm start depends on (data and model)."""
        return {k: getattr(self, k) for k in WARM_KEYS}

    def as_dict(self) -> dict:
        return asdict(self)


def _renamed(key: str) -> str:
    """A setting's current name, with a one-line notice for an old one."""
    if key in RENAMED_SETTINGS:
        warnings.warn(f"benchmark setting {key} is now {RENAMED_SETTINGS[key]}", FutureWarning, stacklevel=3)
        return RENAMED_SETTINGS[key]
    return key
