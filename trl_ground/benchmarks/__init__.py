"""Benchmarks whose figures BENCHMARKS.md quotes: ``rewards`` (scoring speed, CPU), ``step``
(the hybrid step on the real Qwen3-VL shape, GPU) and ``learning`` (does the grounding loss
help? trained here from random weights). Each is a module with ``main(argv=None)``; the
commands ``trl-ground-bench-{rewards,step,learning}`` and ``scripts/bench_*.py`` run it."""
