"""What a newcomer meets first: one-line errors, a fast grouped --help, 'did you mean'."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import DEMO, REPO, one_line_error
from trl_ground.cli.grpo_ground import main as grpo_main
from trl_ground.cli.sft_ground import main as sft_main

QLORA = str(REPO / "configs" / "qlora.yaml")


def test_config_file_mistakes(capsys, tmp_path):
    one_line_error(capsys, sft_main, ["--config", str(tmp_path / "nope.yaml")], "nope.yaml: file not found")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    one_line_error(capsys, sft_main, ["--config", str(tmp_path / "bad.yaml")], "not valid YAML", "line")
    (tmp_path / "typo.yaml").write_text("lora_rr: 8\n")
    one_line_error(capsys, sft_main, ["--config", str(tmp_path / "typo.yaml")], "unknown key", "'lora_rr'", "did you mean lora_r")
    one_line_error(capsys, grpo_main, ["--config"], "--config needs a YAML file")
    one_line_error(capsys, sft_main, ["configs/demo.yaml"], "unexpected argument configs/demo.yaml", "did you mean --config")


def test_unknown_flags_and_bad_values(capsys):
    one_line_error(capsys, sft_main, ["--config", DEMO, "--lora_rr", "3"], "unknown option --lora_rr", "did you mean --lora-r")
    one_line_error(capsys, grpo_main, ["--config", DEMO.replace("demo.yaml", "grpo_demo.yaml"), "--num-generatoins", "3"], "did you mean --num-generations")
    one_line_error(capsys, sft_main, ["--config", DEMO, "--lora-r", "abc"], "invalid int value: 'abc'")
    one_line_error(capsys, sft_main, ["--config", DEMO, "--lora-r", "-3"], "lora_r")


def test_run_problems_are_found_before_loading(capsys, synthetic_data, tiny_model_dir, tmp_path):
    train, test, root = synthetic_data
    own = ["--model", str(tiny_model_dir), "--train-json", str(train), "--img-root", str(root), "--output-dir", str(tmp_path / "run"),
           "--make-synthetic-data", "0"]
    own_eval = ["--eval-json", str(test)]
    # the demo config pointed at other data: its eval_json does not exist there
    one_line_error(capsys, sft_main, ["--config", DEMO, *own, "--eval-json", str(tmp_path / "test.json")],
                   "test.json: file not found", "--eval-strategy no")
    one_line_error(capsys, sft_main, ["--config", DEMO, *own, "--eval-strategy", "no", "--train-json", str(tmp_path / "train.json")],
                   "train_json", "file not found")
    (tmp_path / "a_file").write_text("")
    one_line_error(capsys, sft_main, ["--config", DEMO, *own, *own_eval, "--output-dir", str(tmp_path / "a_file")],
                   "is a file")
    grpo = ["--config", DEMO.replace("demo.yaml", "grpo_demo.yaml"), *own]
    one_line_error(capsys, grpo_main, [*grpo, "--model", "someone/not-downloaded"],
                   "someone/not-downloaded is not in the local Hugging Face cache", "--model")


def test_four_bit_on_a_cpu_is_refused_before_the_processor_loads(capsys, monkeypatch, synthetic_data, tmp_path):
    import torch

    import trl_ground.train.job as train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train, "load_processor", lambda *a, **k: pytest.fail("the processor loaded before the GPU check"))
    data, _, root = synthetic_data
    one_line_error(capsys, sft_main, ["--config", QLORA, "--train-json", str(data), "--img-root", str(root), "--output-dir", str(tmp_path)],
                   "load_in_4bit needs a CUDA GPU", "--no-load-in-4bit")


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        sft_main(["--config", str(tmp_path / "nope.yaml"), "--debug"])
    monkeypatch.setenv("TRL_GROUND_DEBUG", "1")
    with pytest.raises(ValueError, match="file not found"):
        sft_main(["--config", str(tmp_path / "nope.yaml")])


def test_small_commands_share_the_one_line_errors(capsys, tmp_path):
    from trl_ground.cli.check_data import main as check_main
    from trl_ground.cli.plot_training import main as plot_main

    one_line_error(capsys, plot_main, [str(tmp_path)], "no trainer_state.json")
    one_line_error(capsys, check_main, ["--train-json", str(tmp_path / "x.json")], "required", "--img-root")


# What takes seconds to import (TRL alone took ~10 s on the test machines); --help needs none.
HEAVY = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


def help_of(module, *flags):
    """``python -m <module> <flags>`` in a fresh interpreter: (stdout, the modules of
    :data:`HEAVY` that it imported)."""
    code = f"import sys; from {module} import main; main({list(flags)!r}); print('@@', *[m for m in {HEAVY!r} if m in sys.modules])"
    env = {**os.environ, "COLUMNS": "100"}  # the help wraps to the terminal's width
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    text, _, tail = r.stdout.rpartition("@@")
    return text, tail.split()


@pytest.mark.parametrize("module", ["trl_ground.cli.sft_ground", "trl_ground.cli.grpo_ground"])
def test_help_is_fast_and_grouped(module):
    # fast: measured by what it does not import (a time bound failed on a loaded machine)
    text, heavy = help_of(module, "--help")
    assert heavy == [], heavy
    assert "examples:" in text and "--config configs/" in text
    options = text.index("\noptions:")
    assert text.index("--config FILE.yaml", options) < text.index("\nmodel:")
    titles = ["\nmodel:", "\nLoRA:", "\ndata:", "scoring (how a sampled answer is scored):", "\nsampling (", "\ntraining and output:"]
    positions = [text.index(t) for t in titles]
    assert positions == sorted(positions)
    for flag in ("--lora-r INT", "--train-json FILE", "--iou-loss-weight NUM", "--batch-size, --per-device-train-batch-size",
                 "--lr, --learning-rate", "--output-dir DIR", "--help-all"):
        assert flag in text
    assert "(default: 16)" in text.split("--lora-r INT")[1].splitlines()[0]
    assert "--adam-beta1" not in text and len(text.splitlines()) < 200  # TRL's own options: behind --help-all (916 lines before)


def test_help_all_lists_every_option():
    text, _ = help_of("trl_ground.cli.sft_ground", "--help-all")
    assert text.index("\nmodel:") < text.index("every option (TRL's and Transformers' included)") < text.index("--adam_beta1")


def test_small_commands_show_help_and_defaults(capsys, monkeypatch):
    from trl_ground.cli import common
    from trl_ground.cli.check_data import main as check_main
    from trl_ground.cli.make_synthetic_data import main as make_main
    from trl_ground.cli.plot_training import main as plot_main

    parsers = []
    original = common.ArgumentParser.format_help
    monkeypatch.setattr(common.ArgumentParser, "format_help", lambda self: parsers.append(self) or original(self))
    for main in (check_main, make_main, plot_main):
        with pytest.raises(SystemExit) as stop:
            main(["--help"])
        assert stop.value.code == 0
    text = capsys.readouterr().out
    assert len(parsers) == 3
    for parser in parsers:
        formatter = parser._get_formatter()
        for action in parser._actions:
            assert action.help, (parser.prog, action.option_strings)
            shown = formatter._get_help_string(action)
            if action.option_strings and not action.required and action.default not in (None, "==SUPPRESS=="):
                assert "default" in shown, (parser.prog, action.option_strings, shown)
    for needle in ("(default: 200)", "(default: primary)", "(default: RUN_DIR/training.png)", "--no-image-check"):
        assert needle in " ".join(text.split()), needle


def test_debug_shows_the_traceback_and_does_not_leak(capsys, tmp_path):
    import os

    from trl_ground.cli.common import DEBUG_ENV

    with pytest.raises(ValueError, match="nope.yaml"):
        sft_main(["--config", str(tmp_path / "nope.yaml"), "--debug"])
    assert DEBUG_ENV not in os.environ  # the next command is quiet again
    one_line_error(capsys, sft_main, ["--config", str(tmp_path / "nope.yaml")], "nope.yaml: file not found")


def readme_command_lines():
    """The command lines of the README's ```bash blocks: continuation lines joined, comments
    dropped, the brackets of optional parts (``[--adapter DIR]``) taken off."""
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(shlex.split(line.replace("[", "").replace("]", "")))
    return lines


class _Parsed(Exception):
    """Raised by the patched ``parse_args``: the command line parsed, stop before running."""


def test_readme_commands_parse_as_written(monkeypatch):
    """Every command the README shows exists and accepts its options and values as written
    (the trainers through their full parser and the config file; the small commands through
    their own argparse parser, stopped right after parsing)."""
    import argparse
    import importlib
    import tomllib

    from trl_ground.config import GroundingGRPOConfig, GroundingSFTConfig, parse_args

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    monkeypatch.chdir(REPO)  # the README's paths (configs/...) are relative to the checkout
    commands = readme_command_lines()
    seen = set()
    for program, *argv in commands:
        seen.add(program)
        if program == "make":
            assert set(argv) <= targets, argv
            continue
        assert program in scripts, program
        if "--help" in argv:
            continue  # the help itself: test_help_is_fast_and_grouped, test_small_commands_show_help_and_defaults
        if program in ("trl-ground-sft", "trl-ground-grpo"):
            config_class = GroundingSFTConfig if program == "trl-ground-sft" else GroundingGRPOConfig
            parse_args(argv, config_class=config_class)
            continue
        module, _, function = scripts[program].partition(":")
        main = getattr(importlib.import_module(module), function)
        with monkeypatch.context() as patch:
            patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
            try:
                status = main(argv)
            except _Parsed:
                continue
        pytest.fail(f"{program} {' '.join(argv)}: not accepted as written (exit {status})")
    # what the README promises to show: the first real run, on a GPU and on a CPU, and the demo
    assert {"make", "trl-ground-sft", "trl-ground-grpo", "trl-ground-predict", "trl-ground-eval", "trl-ground-plot",
            "trl-ground-check-data", "trl-ground-make-data", "trl-ground-convert-data"} <= seen, seen
    assert len(commands) >= 20, len(commands)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_doc_links_resolve():
    """Every relative link of the README, BENCHMARKS.md and docs/ names a file that exists,
    and its #anchor a heading of that file."""
    pages = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor:
                headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", linked.read_text(), flags=re.DOTALL), re.MULTILINE)
                assert anchor in {_anchor(h) for h in headings}, f"{page.name}: {target}"
            checked += 1
    assert checked >= 20, checked
