"""Failures of a training run that the user can act on, as exceptions that say so in one line:
the output directory (found before the model loads), a disk that fills up during a save, a
checkpoint file that cannot be read on resume.

:func:`describe` turns any of them (and the raw errors of ``torch.save``, safetensors and
``json`` they come from) into the one line the training commands print.
"""

from __future__ import annotations

import errno
import json
import zipfile
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError, safe_open

__all__ = [
    "CorruptCheckpointError",
    "NoSpaceError",
    "NothingTrainedError",
    "OutputError",
    "describe",
    "is_disk_full",
    "naming_disk_full",
    "verify_checkpoint",
]

# What a full disk looks like in the errors of Python (OSError), safetensors (a Rust io error
# in the message) and torch.save's zip writer ("unexpected pos 135744 vs 135636").
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "unexpected pos", "file write failed")
# torch.load's error for a damaged archive (safetensors and json raise their own types).
_READ_FAILURE_WORDS = ("PytorchStreamReader failed",)


class OutputError(ValueError):
    """The output directory or the checkpoint to resume from cannot be used (a user's input
    problem, found before the model loads)."""


class CorruptCheckpointError(OutputError):
    """A file of the checkpoint to resume from cannot be read.

    Attributes:
        path: the file.
    """

    def __init__(self, path, cause: str):
        self.path = str(path)
        super().__init__(f"checkpoint file {path} is corrupt or truncated: {cause}")


class NothingTrainedError(RuntimeError):
    """A run ended without a single optimizer step, so it has no model worth writing."""


class NoSpaceError(OSError):
    """The disk filled up while a checkpoint or a final model was written.

    Attributes:
        filename: the file being written (best effort: the error's file name, else the
            newest file of the directory being written, else that directory).
    """

    def __init__(self, path):
        super().__init__(errno.ENOSPC, "no space left", str(path))

    def __str__(self) -> str:
        return f"no space left while writing {self.filename}"


def _chain(err: BaseException):
    """``err`` and the exceptions it was raised from or during."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception in its chain) says that the disk or the quota is full."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            return True
        if any(word in str(e) for word in _DISK_FULL_WORDS):
            return True
    return False


def _newest_file(directory: Path) -> Path | None:
    files = [p for p in directory.rglob("*") if p.is_file()] if directory.is_dir() else []
    return max(files, key=lambda p: p.stat().st_mtime_ns, default=None)


@contextmanager
def naming_disk_full(directory):
    """Around a save into ``directory``: a disk-full error becomes :class:`NoSpaceError`
    naming the file being written. Use it inside any clean-up of a partial directory, so
    that the file still exists when it is named."""
    try:
        yield
    except NoSpaceError:
        raise
    except Exception as err:
        if not is_disk_full(err):
            raise
        named = next((e.filename for e in _chain(err) if isinstance(e, OSError) and e.filename), None)
        raise NoSpaceError(named or _newest_file(Path(directory)) or directory) from err


def _check_file(path: Path) -> None:
    """Read enough of ``path`` to know it is whole: JSON parsed, a safetensors header checked
    against the file's size, a ``torch.save`` archive's CRCs checked (``torch.load`` does not)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            with safe_open(str(path), "pt"):
                pass
        elif path.suffix in (".pt", ".pth", ".bin"):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                raise ValueError(f"member {bad} fails its CRC check")
    except (OSError, ValueError, zipfile.BadZipFile, SafetensorError) as err:
        raise CorruptCheckpointError(path, f"{type(err).__name__}: {err}") from err


def verify_checkpoint(path) -> None:
    """Check, before anything loads, that ``path`` is a checkpoint (a directory with
    ``trainer_state.json``) whose JSON, safetensors and ``torch.save`` files are whole.

    Raises:
        OutputError: ``path`` is missing or not a checkpoint.
        CorruptCheckpointError: naming the first damaged file and the cause.
    """
    path = Path(path)
    if not path.is_dir():
        raise OutputError(f"checkpoint to resume from not found: {path}")
    if not (path / "trainer_state.json").is_file():
        raise OutputError(f"{path} is not a checkpoint (no trainer_state.json)")
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        _check_file(file)


def describe(err: BaseException) -> str | None:
    """The one line a command prints for ``err``, or None for an error that is not one of
    these (a bug: its traceback is worth more than a line)."""
    if isinstance(err, (OutputError, NoSpaceError, NothingTrainedError)):
        return str(err)
    if is_disk_full(err):
        return f"no space left while writing: {str(err).strip().splitlines()[0]}"
    for e in _chain(err):
        if isinstance(e, (json.JSONDecodeError, SafetensorError)) or any(
            word in str(e) for word in _READ_FAILURE_WORDS
        ):
            where = f" {e.filename}:" if isinstance(e, OSError) and e.filename else ""
            return f"a file could not be read:{where} {type(e).__name__}: {str(e).strip().splitlines()[0]}"
    return None
