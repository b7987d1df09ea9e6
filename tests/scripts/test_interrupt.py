"""Ctrl-C during training: a checkpoint at the end of the step and one line with the command
that resumes it; a second Ctrl-C stops at once. Real processes, real SIGINTs."""

import os
import shlex
import signal
import subprocess
import sys
import time

from tests.helpers import REPO, tiny_run_argv
from trl_ground.train.interrupt import resume_command


def start_training(tiny_model_dir, synthetic_data, out, log, *extra):
    """``trl-ground-sft`` on the tiny model in a child process (stderr into ``log``), returned
    once its training loop runs."""
    argv = tiny_run_argv(tiny_model_dir, synthetic_data, out, "--max-steps", "1000", "--save-steps", "1000", "--eval-strategy", "no",
                         "--batch-size", "1", *extra)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "trl_ground.cli.sft_ground", *argv], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)
    deadline = time.monotonic() + 240
    while "/1000 [" not in log.read_text(errors="replace"):  # the training progress bar has started
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return process, argv


def ctrl_c(process):
    """What a terminal's Ctrl-C does: SIGINT to every process of the group (workers included)."""
    os.killpg(os.getpgid(process.pid), signal.SIGINT)


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tiny_model_dir, synthetic_data, tmp_path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    # a data-loader worker (a forked process, which the terminal's Ctrl-C reaches too) must not answer it
    process, argv = start_training(tiny_model_dir, synthetic_data, out, log, "--dataloader-num-workers", "1")
    ctrl_c(process)
    assert process.wait(timeout=240) == 130
    err = log.read_text()
    assert "Traceback" not in err and "error" not in err, err
    assert err.count("Ctrl-C: stopping after this step with a checkpoint") == 1, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted at step")]
    assert len(lines) == 1, err
    step = int(lines[0].split()[3].rstrip(":"))
    checkpoint = out / f"checkpoint-{step}"
    assert f"checkpoint saved in {checkpoint}; resume with: trl-ground-sft " in lines[0]
    assert shlex.split(lines[0].split("resume with: ", 1)[1]) == ["trl-ground-sft", *argv, "--resume-from-checkpoint", str(checkpoint)]
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "model.safetensors").is_file()
    assert not (out / "final").exists() and not (out / ".staging").exists()


def test_a_second_ctrl_c_stops_at_once(tiny_model_dir, synthetic_data, tmp_path):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    # steps of 1,500 sampled tokens (seconds): the second Ctrl-C falls inside the step the first one waits for
    process, _ = start_training(tiny_model_dir, synthetic_data, out, log, "--max-completion-length", "1500", "--sample-min-new-tokens", "1500")
    ctrl_c(process)
    while "Ctrl-C: stopping" not in log.read_text(errors="replace"):  # the first one has been taken
        assert process.poll() is None, log.read_text()
        time.sleep(0.05)
    ctrl_c(process)
    assert process.wait(timeout=120) == 130
    err = log.read_text()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == ["interrupted: stopped at once by a second Ctrl-C, without a checkpoint of this step (the latest: none)"], err
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".staging/*")), list(out.iterdir())


def test_the_resume_command_replaces_an_earlier_resume():
    line = resume_command(["trl-ground-sft", "--config", "a b.yaml", "--resume-from-checkpoint", "true", "--resume_from_checkpoint=x"], "r/checkpoint-3")
    assert line == "trl-ground-sft --config 'a b.yaml' --resume-from-checkpoint r/checkpoint-3"
