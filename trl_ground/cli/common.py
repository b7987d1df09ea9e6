"""What every command shares: warnings of the library as ``warning: ...`` lines on stderr."""

from __future__ import annotations

import logging
import sys

__all__ = ["show_warnings"]


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
