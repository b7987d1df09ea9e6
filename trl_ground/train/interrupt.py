"""Ctrl-C during training: the first one stops the run at the end of the current optimizer
step with a normal checkpoint (written through the Trainer, so it is complete or absent, see
:class:`trl_ground.train.export.CheckpointStaging`) and ends in one line saying where it is and the
command that resumes it; a second one aborts at once, without that checkpoint.

    with stop_on_interrupt(trainer) as stop:
        trainer.train()
    if stop.stopped_at is not None:
        raise Interrupted(stop.message(output_dir, command_line))

Every process of a distributed run takes the request at the same step (a MAX all-reduce of
the flag at each step end), so that they save and stop together.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from transformers import TrainerCallback

__all__ = ["EXIT_INTERRUPTED", "GracefulStop", "Interrupted", "resume_command", "stop_on_interrupt"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
_RESUME_FLAGS = ("--resume-from-checkpoint", "--resume_from_checkpoint")


class Interrupted(Exception):
    """Training was stopped by Ctrl-C after saving a checkpoint; the message says where it is
    and how to resume."""


def resume_command(command_line: list[str], checkpoint) -> str:
    """``command_line`` (program first) without its own ``--resume-from-checkpoint``, plus
    ``--resume-from-checkpoint checkpoint``, quoted for a shell."""
    kept, skip = [], False
    for arg in command_line:
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in _RESUME_FLAGS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return shlex.join([*kept, "--resume-from-checkpoint", str(checkpoint)])


class GracefulStop(TrainerCallback):
    """Stops training at the next step end with a checkpoint once :meth:`request` was called
    (by the SIGINT handler of :func:`stop_on_interrupt`).

    Attributes:
        requested: a stop was asked for (on this process).
        stopped_at: the optimizer step whose checkpoint the stop saved (None until then).
    """

    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None

    def request(self) -> None:
        self.requested = True

    def _requested_by_any_process(self, args) -> bool:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        import torch

        flag = torch.tensor([1.0 if self.requested else 0.0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is None and self._requested_by_any_process(args):
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False  # stop promptly; the resumed run evaluates on its schedule
        return control

    def message(self, output_dir, command_line: list[str] | None) -> str:
        """The line printed after the stop: the checkpoint and the command that resumes it
        (``command_line``, program first, when known)."""
        checkpoint = Path(output_dir) / f"checkpoint-{self.stopped_at}"
        how = (f"resume with: {resume_command(command_line, checkpoint)}" if command_line
               else f"resume by running the same command with --resume-from-checkpoint {shlex.quote(str(checkpoint))}")
        return f"interrupted at step {self.stopped_at}: checkpoint saved in {checkpoint}; {how}"


def _latest_checkpoint(output_dir) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    return (get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None) or "none"


@contextlib.contextmanager
def stop_on_interrupt(trainer):
    """Around ``trainer.train()``: Ctrl-C (SIGINT) asks :class:`GracefulStop` to stop at the
    next step end with a checkpoint; a second Ctrl-C raises ``KeyboardInterrupt`` at once
    (naming the last checkpoint). Yields the callback. The previous handler is restored on exit.
    Outside the main thread (where no signal handler can be set) it changes nothing."""
    stop = GracefulStop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    owner = os.getpid()

    def handle(signum, frame):
        if os.getpid() != owner:  # a forked data-loader worker: the main process decides
            return
        if stop.requested:
            latest = _latest_checkpoint(trainer.args.output_dir)
            raise KeyboardInterrupt(f"stopped at once by a second Ctrl-C, without a checkpoint of this step (the latest: {latest})")
        stop.request()
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end the line of the progress bar
        print("Ctrl-C: stopping after this step with a checkpoint (Ctrl-C again stops at once, without it)", file=sys.stderr, flush=True)

    trainer.add_callback(stop)
    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
        trainer.remove_callback(stop)
