"""What every command shares: warnings of the library as ``warning: ...`` lines on stderr, and
the training commands' run with its failures as one ``error: ...`` line."""

from __future__ import annotations

import logging
import sys

__all__ = ["run_reporting_errors", "show_warnings"]


class _WarningLines(logging.StreamHandler):
    """``warning: <message>`` on the current stderr, one line per warning."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("warning: %(message)s"))
        self.setLevel(logging.WARNING)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def show_warnings() -> None:
    """Print the warnings of ``trl_ground`` loggers on stderr (once, however often called)."""
    log = logging.getLogger("trl_ground")
    if not any(isinstance(h, _WarningLines) for h in log.handlers):
        log.addHandler(_WarningLines())
    if log.getEffectiveLevel() > logging.WARNING:
        log.setLevel(logging.WARNING)


def run_reporting_errors(run, *args) -> int:
    """``run(*args)``, returning the exit status: 0; 2 when the output directory or the
    checkpoint to resume from cannot be used (found before the model loads); 1 for a disk
    that filled up during a save or a file that cannot be read. Those failures are one
    ``error: ...`` line (:func:`trl_ground.run_errors.describe`); any other error keeps its
    traceback. The library's warnings are ``warning: ...`` lines (:func:`show_warnings`)."""
    from trl_ground.run_errors import OutputError, describe

    show_warnings()
    try:
        run(*args)
    except Exception as err:
        message = describe(err)
        if message is None:
            raise
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end the line of an interrupted progress bar
        print(f"error: {message}", file=sys.stderr)
        return 2 if isinstance(err, OutputError) else 1
    return 0
