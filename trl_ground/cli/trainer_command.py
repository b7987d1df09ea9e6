"""What ``trl-ground-sft`` and ``trl-ground-grpo`` share: their ``--help``, the check of the
``--config`` file and of the option names (all three before torch or TRL is imported),
parsing, and the run."""

from __future__ import annotations

from .common import fail, run_reporting_errors

__all__ = ["run_trainer_command"]

_PROGS = {"sft": "trl-ground-sft", "grpo": "trl-ground-grpo"}


def run_trainer_command(argv: list[str], kind: str, description: str) -> int:
    """``trl-ground-<kind>``: help, or check the config file, parse, check the run and train.

    Args:
        argv: the command line without the program name (``--debug`` already taken out).
        kind: ``"sft"`` (the hybrid trainer) or ``"grpo"``.
        description: the text ``--help`` opens with (the command's docstring).
    Returns:
        the exit status (0; errors raise ``ValueError`` / ``OSError`` for :func:`~.common.command`).
    """
    if "-h" in argv or "--help" in argv or "--help-all" in argv:
        from ..config.help import format_help

        print(format_help(kind, _PROGS[kind], description), end="")
        if "--help-all" in argv:
            print("\nevery option (TRL's and Transformers' included):\n")
            print(_full_parser(kind).format_help())
        return 0
    if not argv:
        return fail(f"nothing to do: give a config (e.g. {_PROGS[kind]} --config configs/demo.yaml); --help lists the options")
    from ..config.argv import check_names, config_path, split_config_flag

    argv = split_config_flag(argv)
    path = config_path(argv)
    settings = None
    if path is not None:
        from ..train.preflight import check_config_file

        settings = check_config_file(path)
    check_names(argv, kind, settings, path)  # before TRL is imported: a typo is reported at once
    from ..config import GroundingGRPOConfig, GroundingSFTConfig, parse_args

    config_class = GroundingSFTConfig if kind == "sft" else GroundingGRPOConfig
    data_args, model_args, scoring, config = parse_args(argv, config_class=config_class)
    if kind == "sft":
        from ..train.job import run_sft as run
    else:
        from ..train.grpo import run_grpo as run
    return run_reporting_errors(run, data_args, model_args, scoring, config, command_line=[_PROGS[kind], *argv])


def _full_parser(kind: str):
    from ..config import GroundingGRPOConfig, GroundingSFTConfig
    from ..config.parser import GroundingParser

    parser = GroundingParser(GroundingSFTConfig if kind == "sft" else GroundingGRPOConfig)
    parser.prog = _PROGS[kind]
    return parser
