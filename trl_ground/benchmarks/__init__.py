"""Benchmarks whose figures BENCHMARKS.md quotes: ``rewards`` (scoring speed, CPU), ``step``
(the hybrid step on the real Qwen3-VL shape, GPU) and ``learning`` (does the grounding loss
help? trained here from random weights). Each is a module with ``run(argv)`` and
``main = benchmark_command(run)``; the commands ``trl-ground-bench-{rewards,step,learning}``
and ``scripts/bench_*.py`` run it."""

from ..cli.common import command

__all__ = ["benchmark_command"]


def benchmark_command(run):
    """The entry point ``main(argv=None) -> int`` of a benchmark's ``run(argv)`` (which
    writes its own result): errors are one line, as in every other command."""

    @command
    def main(argv: list[str]) -> int:
        run(argv)
        return 0

    main.__doc__ = f"The command: {run.__module__}.run (its result is written where its options say)."
    return main
