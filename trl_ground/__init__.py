"""trl-ground: fine-tune Qwen3-VL to ground objects (answer with boxes) with TRL.

The packages, bottom to top; a module imports from its own package and the ones below it
(``tests/trl_ground/test_package_layers.py``, ``docs/packages.png``). ``rewards`` (the
torch-free scoring, its own top-level package) lies below them all."""

PACKAGE_LAYERS = ("model", "data", "sampling", "loss", "config", "train", "inference", "cli", "benchmarks")
