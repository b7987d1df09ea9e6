"""Multi-process training through the standard launcher, on the CPU (gloo backend)."""

import json
import math
import os
import subprocess
import sys

import pytest
import yaml

from tests.helpers import REPO

ACCELERATE_CONFIGS = ["ddp", "fsdp_qlora", "zero2", "zero3"]


@pytest.mark.parametrize("name", ACCELERATE_CONFIGS)
def test_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert config.distributed_type.value == raw["distributed_type"] and config.num_processes == 2
    assert config.mixed_precision == "bf16"
    if name == "fsdp_qlora":
        assert "Qwen3VLTextDecoderLayer" in raw["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"]
    if name.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


@pytest.mark.slow
def test_two_process_cpu_run_trains_and_writes_one_set_of_outputs(tiny_model_dir, synthetic_data, tmp_path):
    train, test, root = synthetic_data
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "scripts/sft_ground.py",
        "--config", "configs/demo.yaml", "--use-cpu", "true", "--use-lora", "true", "--lora-r", "8", "--lora-alpha", "16", "--finetune-attention-modules", "true", "--lr", "0.003", "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0",
        "--max-steps", "2", "--save-steps", "2", "--logging-steps", "1", "--eval-strategy", "no", "--output-dir", str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("merged 16-bit model:") == 1  # the export ran once
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "README.md", "checkpoint-2", "final", "final_merged", "trainer_state.json"
    ]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers
    state = json.loads((out / "trainer_state.json").read_text())
    logs = [r for r in state["log_history"] if "lm_loss" in r]
    assert [r["step"] for r in logs] == [1, 2] and all("f1" in r and "grounding_cost" in r for r in logs)
    # 2 processes x batch 4 per step: one step covers 8 examples (one process would cover 4)
    from trl_ground.config import DataArguments
    from trl_ground.data.dataset import build_examples
    from trl_ground.data.records import load_records

    n_examples = len(build_examples(load_records(train, root)[0], DataArguments(add_negatives=True)))
    one_process_epoch = 1 / math.ceil(n_examples / 4)
    assert logs[0]["epoch"] == pytest.approx(1 / math.ceil(math.ceil(n_examples / 2) / 4))
    assert logs[0]["epoch"] > 1.5 * one_process_epoch
