"""Outputs are never lost or mixed: the output directory is checked before the model loads,
another run's outputs are refused (or replaced on request), ``--resume-from-checkpoint true``
resumes the latest checkpoint, and a full disk or a corrupt checkpoint is one line naming the file."""

import errno
import json
import os
import re
import shutil
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import REPO
from trl_ground.cli.grpo_ground import main as grpo_main
from trl_ground.cli.sft_ground import main as sft_main
from trl_ground.config import GroundingGRPOConfig, ModelArguments, parse_args
from trl_ground.train import output_dir as output_dir_module
from trl_ground.train.export import atomic_directory
from trl_ground.train.output_dir import estimate_output_sizes, prepare_output_dir, resolve_resume
from trl_ground.train.run_errors import (
    CorruptCheckpointError,
    NoSpaceError,
    NothingTrainedError,
    OutputError,
    describe,
    naming_disk_full,
    verify_checkpoint,
)

# A short run of the tiny model: 1 sampled answer of at most 8 tokens per prompt, no evaluation.
QUICK = ("--eval-strategy", "no", "--num-generations", "1", "--max-completion-length", "8", "--logging-steps", "1")


def sft_argv(tiny_model_dir, synthetic_data, out, *extra):
    train, test, root = synthetic_data
    return [
        "--config", str(REPO / "configs/demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0",
        "--output-dir", str(out),
        "--overwrite-output-dir", "false", *QUICK, *extra,
    ]


def config_for(out, *extra):
    """``(model_args, config)`` of the demo config with ``output_dir`` ``out`` (not overwritten)."""
    argv = ["--config", str(REPO / "configs/demo.yaml"), "--output-dir", str(out), "--overwrite-output-dir", "false", *extra]
    _, model_args, _, config = parse_args(argv)
    return model_args, config


def one_error_line(capsys) -> str:
    """The one ``error: ...`` line on stderr (progress bars may precede it on its line)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = re.findall(r"error: [^\r\n]*", err)
    assert len(lines) == 1, err
    return lines[0]


def fake_checkpoint(path: Path, step: int = 2) -> Path:
    """The files of a Trainer checkpoint, small: state JSON, adapter safetensors, torch.save archives."""
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    (path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    save_file({"lora_A": torch.randn(8, 32), "lora_B": torch.zeros(32, 8)}, str(path / "adapter_model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.randn(256)}}}, path / "optimizer.pt")
    torch.save({"python": 1}, path / "rng_state.pth")
    return path


# --- the length of the run and resume spellings (the parser) -----------------------------------

@pytest.mark.parametrize(
    "extra, message",
    [
        (("--max-steps", "-5"), "max_steps must be > 0, or -1"),
        (("--max-steps", "0"), "max_steps must be > 0, or -1"),
        (("--max-steps", "-1", "--epochs", "-1"), "num_train_epochs"),
        (("--max-steps", "-1", "--epochs", "0"), "num_train_epochs"),
        (("--save-steps", "0"), "save_steps must be > 0"),
        (("--save-steps", "-2"), "save_steps must be > 0"),
    ],
)
def test_non_positive_run_lengths_are_refused_before_loading(extra, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        config_for(tmp_path, *extra)
    assert sft_main(["--config", str(REPO / "configs/demo.yaml"), "--output-dir", str(tmp_path), *extra]) == 2
    assert message.split(" must")[0] in one_error_line(capsys)
    _, config = config_for(tmp_path, "--max-steps", "5", "--epochs", "-1")  # epochs do not count with max_steps
    assert config.max_steps == 5


@pytest.mark.parametrize("spelling, value", [("true", True), ("True", True), ("latest", True), ("LATEST", True),
                                             ("false", None), ("runs/x/checkpoint-4", "runs/x/checkpoint-4")])
def test_resume_spellings(spelling, value, tmp_path):
    for config_class in (None, GroundingGRPOConfig):
        argv = ["--output-dir", str(tmp_path), "--resume-from-checkpoint", spelling]
        assert parse_args(argv, config_class=config_class)[3].resume_from_checkpoint == value


# --- the output directory before the model loads ------------------------------------------------

def test_output_dir_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    for out, words in ((tmp_path / "taken", "is a file"), (tmp_path / "taken" / "run", "is not writable")):
        model_args, config = config_for(out)
        with pytest.raises(OutputError, match=words) as err:
            prepare_output_dir(config, model_args)
        assert str(out) in str(err.value)


def test_unwritable_output_dir_is_refused(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(output_dir_module.tempfile, "mkstemp", refuse)  # as root, chmod would not stop a write
    model_args, config = config_for(tmp_path / "run")
    with pytest.raises(OutputError, match=r"output_dir .*run is not writable: Permission denied"):
        prepare_output_dir(config, model_args)


def test_a_missing_output_dir_is_created_and_no_probe_file_is_left(tmp_path):
    model_args, config = config_for(tmp_path / "a" / "b", "--model", "missing/model-id-offline")
    prepare_output_dir(config, model_args)  # an unreachable model: the room is not checked (a warning)
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())


def test_no_room_for_a_checkpoint_is_refused_with_the_estimate(tiny_model_dir, tmp_path, monkeypatch):
    model_args, config = config_for(tmp_path / "run", "--model", str(tiny_model_dir))
    needed = estimate_output_sizes(model_args, config).checkpoint
    monkeypatch.setattr(output_dir_module, "free_bytes", lambda path: needed - 1)
    with pytest.raises(OutputError, match=r"not enough space in .*run for one checkpoint: needs ~0\.\d+ GB, 0\.\d+ GB free"):
        prepare_output_dir(config, model_args)
    monkeypatch.setattr(output_dir_module, "free_bytes", lambda path: needed)
    prepare_output_dir(config, model_args)


def test_parameter_count_without_weights_matches_the_loaded_model(tiny_model_dir, tmp_path):
    from trl_ground.model.loading import count_parameters, load_model

    for flags in ({}, {"finetune_vision_layers": True}, {"use_lora": False}):
        model_args = ModelArguments(model=str(tiny_model_dir), load_in_4bit=False, lora_r=8, **flags)
        model = load_model(model_args, gradient_checkpointing=False)
        trainable, total = count_parameters(model)
        base = total - trainable if model_args.use_lora else total  # the count is of the base model's parameters
        assert output_dir_module._parameter_counts(model_args) == (trainable, base)
    model = load_model(ModelArguments(model=str(tiny_model_dir), load_in_4bit=False, lora_r=4), gradient_checkpointing=False)
    model.save_pretrained(tmp_path / "adapter")  # a trained adapter to continue from: its tensors are the trainable ones
    model_args = ModelArguments(model=str(tiny_model_dir), load_in_4bit=False, adapter=str(tmp_path / "adapter"))
    assert output_dir_module._parameter_counts(model_args)[0] == count_parameters(model)[0]


def test_checkpoint_estimate_formula(monkeypatch):
    """Qwen3-VL-8B's architecture (8.77 B parameters), LoRA r16 on the language MLP (28.3 M), AdamW."""
    counts = (28_311_552, 8_767_123_696)
    monkeypatch.setattr(output_dir_module, "_parameter_counts", lambda model_args: counts)
    lora = ModelArguments(load_in_4bit=False)
    sizes = estimate_output_sizes(lora, types.SimpleNamespace(optim="adamw_torch"))
    overhead = output_dir_module.CHECKPOINT_OVERHEAD_BYTES
    assert sizes.checkpoint == 4 * counts[0] + 8 * counts[0] + overhead  # fp32 adapters + two fp32 moments
    assert sizes.final == 4 * counts[0] + 2 * counts[1]  # adapters + the merged model in bf16
    assert estimate_output_sizes(lora, types.SimpleNamespace(optim="paged_adamw_8bit")).checkpoint == 6 * counts[0] + overhead


def test_another_runs_outputs_are_refused_then_replaced_on_request(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    fake_checkpoint(out / "checkpoint-7")
    (out / "final").mkdir()
    (out / "trainer_state.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    model_args, config = config_for(out, "--model", str(tiny_model_dir))
    with pytest.raises(OutputError, match=r"already holds another run \(checkpoint-7, final\).*--overwrite-output-dir true"):
        prepare_output_dir(config, model_args)
    assert (out / "checkpoint-7").is_dir()  # nothing touched
    model_args, config = config_for(out, "--model", str(tiny_model_dir), "--overwrite-output-dir", "true")
    prepare_output_dir(config, model_args)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # the old run's outputs only


def test_resume_true_finds_the_latest_checkpoint(tmp_path):
    out = tmp_path / "run"
    for step in (2, 10, 4):
        fake_checkpoint(out / f"checkpoint-{step}", step)
    (out / "checkpoint-99.txt").write_text("not a checkpoint")
    assert resolve_resume(True, out) == str(out / "checkpoint-10")  # by number, not by name
    # the fake checkpoints hold LoRA adapters of rank 8: resumed with that setup
    model_args, config = config_for(out, "--model", "missing/model-id-offline", "--resume-from-checkpoint", "latest",
                                    "--use-lora", "true", "--no-load-in-4bit", "--lora-r", "8")
    prepare_output_dir(config, model_args)  # resuming into a directory with checkpoints is the point
    assert config.resume_from_checkpoint == str(out / "checkpoint-10")
    with pytest.raises(OutputError, match=r"no checkpoint to resume from in .*empty"):
        resolve_resume(True, tmp_path / "empty")


@pytest.mark.parametrize(
    "damage, cause",
    [
        ("adapter_model.safetensors", "SafetensorError"),
        ("optimizer.pt", "BadZipFile"),
        ("trainer_state.json", "JSONDecodeError"),
    ],
)
def test_a_corrupt_checkpoint_is_one_line_naming_the_file(damage, cause, tiny_model_dir, synthetic_data, tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "old" / "checkpoint-2")
    verify_checkpoint(ckpt)
    data = (ckpt / damage).read_bytes()
    (ckpt / damage).write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a killed copy
    with pytest.raises(CorruptCheckpointError, match=cause) as err:
        verify_checkpoint(ckpt)
    assert err.value.path == str(ckpt / damage)
    argv = sft_argv(tiny_model_dir, synthetic_data, tmp_path / "run", "--resume-from-checkpoint", str(ckpt))
    assert sft_main(argv) == 2
    line = one_error_line(capsys)
    assert f"checkpoint file {ckpt / damage} is corrupt or truncated: {cause}" in line


def test_a_flipped_byte_inside_the_optimizer_archive_is_caught(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "checkpoint-2")
    data = bytearray((ckpt / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # torch.load would read this without a word
    (ckpt / "optimizer.pt").write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="fails its CRC check"):
        verify_checkpoint(ckpt)


def test_a_missing_checkpoint_is_one_line(tiny_model_dir, synthetic_data, tmp_path, capsys):
    for resume, words in ((str(tmp_path / "nowhere" / "checkpoint-3"), "checkpoint to resume from not found"),
                          ("true", "no checkpoint to resume from in")):
        assert sft_main(sft_argv(tiny_model_dir, synthetic_data, tmp_path / "run", "--resume-from-checkpoint", resume)) == 2
        assert words in one_error_line(capsys)
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match="is not a checkpoint \\(no trainer_state.json\\)"):
        verify_checkpoint(tmp_path / "dir")


# --- a full disk ------------------------------------------------------------------------------

def test_disk_full_names_the_newest_file_of_the_directory(tmp_path):
    (tmp_path / "adapter_model.safetensors").write_bytes(b"1")
    (tmp_path / "optimizer.pt").write_bytes(b"12")
    os.utime(tmp_path / "adapter_model.safetensors", ns=(1, 1))
    torch_error = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 135744 vs 135636")
    with pytest.raises(NoSpaceError) as err, naming_disk_full(tmp_path):
        raise torch_error
    assert str(err.value) == f"no space left while writing {tmp_path / 'optimizer.pt'}"
    assert describe(err.value) == str(err.value) and err.value.errno == errno.ENOSPC
    with pytest.raises(NoSpaceError, match="writing /x/named.bin"), naming_disk_full(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device", "/x/named.bin")
    with pytest.raises(KeyError), naming_disk_full(tmp_path):  # anything else passes through
        raise KeyError("other")
    assert describe(KeyError("other")) is None and describe(RuntimeError("unrelated")) is None


def test_disk_full_while_writing_a_final_model_leaves_nothing_behind(tmp_path):
    with pytest.raises(NoSpaceError, match=r"model\.safetensors"), atomic_directory(tmp_path / "final_merged") as tmp:
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not list(tmp_path.iterdir())


def test_disk_full_during_a_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(
    tiny_model_dir, synthetic_data, tmp_path, monkeypatch, capsys
):
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt"):
            Path(f).write_bytes(b"\0" * 100)  # the part that fitted
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "run"
    assert sft_main(sft_argv(tiny_model_dir, synthetic_data, out, "--max-steps", "1", "--save-steps", "1")) == 1
    line = one_error_line(capsys)
    assert line == f"error: no space left while writing {out / '.staging' / 'checkpoint-1' / 'optimizer.pt'}"
    assert not (out / "final").exists() and not list(out.glob("checkpoint-*")) and not list((out / ".staging").glob("*"))


# --- whole runs through the commands -------------------------------------------------------------

def record_resumes(monkeypatch) -> list[str]:
    """The checkpoints the Trainer (SFT's and GRPO's) loads weights from, in order."""
    from transformers import Trainer

    loaded, real = [], Trainer._load_from_checkpoint

    def spy(self, resume_from_checkpoint, *args, **kwargs):
        loaded.append(resume_from_checkpoint)
        return real(self, resume_from_checkpoint, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_load_from_checkpoint", spy)
    return loaded


def test_rerun_is_refused_and_resume_true_continues(tiny_model_dir, synthetic_data, tmp_path, capsys, monkeypatch):
    loaded = record_resumes(monkeypatch)
    out = tmp_path / "run"
    argv = sft_argv(tiny_model_dir, synthetic_data, out, "--max-steps", "1", "--save-steps", "1", "--use-lora", "true")
    assert sft_main(argv) == 0
    final = (out / "final" / "adapter_model.safetensors").read_bytes()
    assert sft_main(argv) == 2  # the same command again: the first run's outputs are kept
    assert "already holds another run (checkpoint-1, final, final_merged)" in one_error_line(capsys)
    assert (out / "final" / "adapter_model.safetensors").read_bytes() == final

    assert sft_main([*argv, "--max-steps", "2", "--resume-from-checkpoint", "true"]) == 0
    assert loaded == [str(out / "checkpoint-1")]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [r["step"] for r in state["log_history"] if "lm_loss" in r] == [1, 2]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_grpo_resume_true_continues(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    loaded = record_resumes(monkeypatch)
    train, _, root = synthetic_data
    out = tmp_path / "grpo"
    argv = [
        "--config", str(REPO / "configs/grpo_demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--img-root", str(root), "--make-synthetic-data", "0", "--output-dir", str(out),
        "--overwrite-output-dir", "false", "--max-steps", "1", "--save-steps", "1", "--logging-steps", "1",
        "--batch-size", "4", "--num-generations", "2", "--max-completion-length", "8",
    ]
    assert grpo_main(argv) == 0
    assert grpo_main([*argv, "--max-steps", "2", "--resume-from-checkpoint", "True"]) == 0
    assert loaded == [str(out / "checkpoint-1")]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (out / "checkpoint-2").is_dir()


def test_a_run_that_trained_nothing_writes_no_final(tiny_model_dir, synthetic_data, tmp_path, capsys):
    from trl_ground.train.job import build_trainer, finish_run

    args = parse_args(sft_argv(tiny_model_dir, synthetic_data, tmp_path, "--max-steps", "1"))
    trainer = build_trainer(*args)
    assert trainer.state.global_step == 0
    with pytest.raises(NothingTrainedError, match="trained 0 steps .*final/ not written") as err:
        finish_run(trainer, args[1], tmp_path)
    assert not (tmp_path / "final").exists() and not (tmp_path / "trainer_state.json").exists()
    assert describe(err.value) == str(err.value)


# --- images ---------------------------------------------------------------------------------------

def test_no_image_check_skips_opening_images_for_training(tiny_model_dir, synthetic_data, tmp_path):
    from trl_ground.train.job import build_trainer

    train, _, root = synthetic_data
    records = json.loads(Path(train).read_text())[:4]
    for r in records:
        path = r.get("image_path") or r["image"]
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(root) / path, tmp_path / path)
    (tmp_path / "junk.png").write_bytes(b"\x00not an image" * 50)
    records.append({**records[0], "image": "junk.png", "image_path": "junk.png"})
    (tmp_path / "train.json").write_text(json.dumps(records))
    argv = ["--config", str(REPO / "configs/demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
            "--train-json", str(tmp_path / "train.json"), "--img-root", str(tmp_path), "--make-synthetic-data", "0",
            "--eval-json", str(tmp_path / "train.json"), "--output-dir", str(tmp_path / "run")]
    with pytest.raises(ValueError, match=r"record 4, field 'image(_path)?': .*junk\.png: not an image"):
        build_trainer(*parse_args(argv))
    data_args = parse_args([*argv, "--no-image-check"])[0]
    assert data_args.image_check is False
    trainer = build_trainer(*parse_args([*argv, "--no-image-check"]))  # trusted: the files only have to exist
    assert "junk.png" in trainer.train_dataset.with_format(None)["image_id"]
    assert "junk.png" in trainer.eval_dataset.with_format(None)["image_id"]
