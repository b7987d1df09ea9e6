"""What every command shares: one ``error: ...`` line instead of a traceback, ``--debug`` to
see the traceback, the library's warnings as ``warning: ...`` lines, quiet dependencies, and the training
commands' run with its failures (output directory, full disk, corrupt checkpoint) as one line.

    @command
    def main(argv: list[str]) -> int: ...

A user mistake or an environment problem (a missing file, bad YAML, an unknown option, no
network, no GPU) raises ``ValueError`` or ``OSError``; :func:`command` prints its first line
as ``error: ...`` on stderr and exits 2. ``--debug`` (anywhere on the command line) or
``TRL_GROUND_DEBUG=1`` lets the exception through, with its traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import warnings

__all__ = [
    "DEBUG_ENV",
    "DEBUG_FLAG",
    "USER_ERRORS",
    "ArgumentParser",
    "add_model_options",
    "add_prompt_options",
    "command",
    "error_line",
    "fail",
    "prompt_words",
    "quiet_libraries",
    "run_reporting_errors",
    "show_warnings",
]

DEBUG_FLAG = "--debug"
DEBUG_ENV = "TRL_GROUND_DEBUG"
DEBUG_HELP = f"show the traceback of an error instead of one line (also {DEBUG_ENV}=1)"
# What a user or the environment causes: bad input, missing or unreadable files, no network.
USER_ERRORS = (ValueError, OSError)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each option's default after its help (unless the
    help already says it, or the option is required)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required or action.default is argparse.SUPPRESS or "default" in text or not action.option_strings:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (off by default)"  # a flag is off unless given
        if action.default is None:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {str(shown).replace('%', '%%')})"  # argparse %-formats the help


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` for the commands: the description kept as written, defaults
    shown, ``--debug`` listed, and usage errors raised as one ``ValueError`` line (exit 2
    through :func:`command`) instead of the usage block."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # a typo of a flag is an error, not another flag
        super().__init__(*args, **kwargs)
        # taken out of argv by `command` before parsing; listed here so that --help shows it
        self.add_argument(DEBUG_FLAG, action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)

    def error(self, message):
        raise ValueError(message)


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
    """Print the warnings of ``trl_ground`` loggers on stderr (once, however often called), and
    a renamed option's notice (:class:`~trl_ground.config.renamed.RenamedOptionWarning`) as one
    ``warning: ...`` line too."""
    log = logging.getLogger("trl_ground")
    if not any(isinstance(h, _WarningLines) for h in log.handlers):
        log.addHandler(_WarningLines())
    if log.getEffectiveLevel() > logging.WARNING:
        log.setLevel(logging.WARNING)
    if not getattr(warnings.showwarning, "one_line_notices", False):
        warnings.showwarning = _one_line_notices(warnings.showwarning)


def _one_line_notices(show):
    """``warnings.showwarning`` that prints a renamed option's notice as ``warning: <message>``
    (no file and line: the option came from the command line or the config file)."""
    from trl_ground.config.renamed import RenamedOptionWarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RenamedOptionWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file, flush=True)
        else:
            show(message, category, filename, lineno, file, line)

    showwarning.one_line_notices = True
    return showwarning


def run_reporting_errors(run, *args, **kwargs) -> int:
    """``run(*args, **kwargs)``, returning the exit status: 0; 2 when the output directory or the
    checkpoint to resume from cannot be used (found before the model loads); 1 for a disk
    that filled up during a save or a file that cannot be read; 130 when Ctrl-C stopped the
    run after a checkpoint (its line says how to resume). Those failures are one
    ``error: ...`` line (:func:`trl_ground.train.run_errors.describe`), unless ``--debug`` was given
    (:func:`command` then sets ``TRL_GROUND_DEBUG``); any other error keeps its traceback.
    The library's warnings are ``warning: ...`` lines (:func:`show_warnings`)."""
    from trl_ground.train.interrupt import EXIT_INTERRUPTED, Interrupted
    from trl_ground.train.run_errors import OutputError, describe

    show_warnings()
    try:
        run(*args, **kwargs)
    except Interrupted as stopped:
        print(stopped, file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as err:
        message = describe(err)
        if message is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end the line of an interrupted progress bar
        print(f"error: {message}", file=sys.stderr)
        return 2 if isinstance(err, OutputError) else 1
    return 0


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--adapter`` and ``--base-model`` of the commands that ask a trained model
    (resolved by :func:`trl_ground.model.source.resolve_model_source`)."""
    parser.add_argument("--model", required=True,
                        help="merged/full model directory or id, or a LoRA run's final/ or checkpoint-N (adapters: "
                             "loaded on the base their adapter_config.json names)")
    parser.add_argument("--adapter", help="LoRA adapter directory to load on --model")
    parser.add_argument("--base-model", "--base_model",
                        help="with LoRA adapters as --model: the base to load them on (default: the one their adapter_config.json names)")


def add_prompt_options(parser: argparse.ArgumentParser) -> None:
    """``--system-prompt`` and ``--query-template``: the words a training run used (commands
    that ask a trained model must ask it the same way)."""
    parser.add_argument("--system-prompt", help="the training run's system prompt (default: the project's)")
    parser.add_argument("--query-template", help="the training run's query template, with {class} (default: the project's)")


def prompt_words(args) -> dict:
    """The :func:`add_prompt_options` given, as ``DataArguments`` keywords."""
    return {k: v for k, v in (("system_prompt", args.system_prompt), ("query_template", args.query_template)) if v}


def quiet_libraries() -> None:
    """Silence what the dependencies say that concerns no run of this project.

    - bitsandbytes, on a CPU with AVX512-BF16, warns at import that its optional CPU 4-bit
      kernel package (``kernels``) is missing: 4-bit here always runs on CUDA.
    - transformers' ``gradient_checkpointing`` -> ``activation_checkpointing`` renames
      (:func:`trl_ground.model.compat.silence_checkpointing_renames`).
    """
    from ..model.compat import silence_checkpointing_renames

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    silence_checkpointing_renames()


def error_line(err: BaseException) -> str:
    """One line for an exception: ``path: reason`` for an ``OSError`` about a file, else the
    first non-empty line of its message (its type name when it has none)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def fail(err: BaseException | str, code: int = 2) -> int:
    """Print ``error: <one line>`` on stderr; returns ``code`` (the exit status)."""
    message = err if isinstance(err, str) else error_line(err)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """``(debug, argv without --debug)``: ``--debug`` on the command line or ``TRL_GROUND_DEBUG``
    set to anything but ``""`` / ``0``."""
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    return debug, [a for a in argv if a != DEBUG_FLAG]


def command(main):
    """Wrap ``main(argv: list[str]) -> int`` as an entry point ``main(argv=None) -> int``:
    ``argv`` defaults to ``sys.argv[1:]``, ``--debug`` is taken out, warnings become lines,
    a ``ValueError`` / ``OSError`` becomes one ``error:`` line and exit status 2, Ctrl-C one
    ``interrupted`` line and exit status 130 (with ``--debug``: the exception and its traceback)."""

    @functools.wraps(main)
    def entry_point(argv=None) -> int:
        debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
        previous = os.environ.get(DEBUG_ENV)
        if debug:
            os.environ[DEBUG_ENV] = "1"  # for the runs' own error reporting (run_reporting_errors)
        show_warnings()
        quiet_libraries()
        try:
            return main(argv)
        except USER_ERRORS as err:
            if debug:
                raise
            return fail(err)
        except KeyboardInterrupt as err:  # Ctrl-C (training's first Ctrl-C saves a checkpoint instead)
            if debug:
                raise
            if sys.stderr.isatty():
                print(file=sys.stderr)
            print(f"interrupted: {err}" if str(err) else "interrupted", file=sys.stderr, flush=True)
            return 130
        finally:
            if previous is None:
                os.environ.pop(DEBUG_ENV, None)
            else:
                os.environ[DEBUG_ENV] = previous

    return entry_point
