"""Benchmarks whose figures BENCHMARKS.md quotes: ``rewards`` (scoring speed, CPU), ``step``
(the hybrid step on the real Qwen3-VL shape, GPU) and ``learning`` (does the grounding loss
help? trained here from random weights). Each is a module with ``run(argv)`` and
``main = benchmark_command(run)``; the commands ``trl-ground-bench-{rewards,step,learning}``
and ``scripts/bench_*.py`` run it."""

import tempfile
from contextlib import contextmanager

from ..cli.common import command

__all__ = ["benchmark_command", "scratch_tempdir"]


@contextmanager
def scratch_tempdir(prefix: str):
    """Inside, ``tempfile``'s default directory is one new folder, removed with everything in
    it on the way out (the benchmarks' models, images and trainer outputs)."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        tempfile.tempdir = scratch
        try:
            yield scratch
        finally:
            tempfile.tempdir = previous


def benchmark_command(run, scratch: bool = False):
    """The entry point ``main(argv=None) -> int`` of a benchmark's ``run(argv)`` (which
    writes its own result): errors are one line, as in every other command. With
    ``scratch``, its temporary files go in a folder removed at the end."""

    @command
    def main(argv: list[str]) -> int:
        if scratch:
            with scratch_tempdir(f"{run.__module__.rsplit('.', 1)[-1]}-"):
                run(argv)
        else:
            run(argv)
        return 0

    main.__doc__ = f"The command: {run.__module__}.run (its result is written where its options say)."
    return main
