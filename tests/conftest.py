"""Shared fixtures: a tiny offline Qwen3-VL and a small synthetic dataset, built once."""

import os

import pytest

from tests.helpers import REAL_PROCESSOR, tiny_run_argv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from trl_ground.model.tiny import build_tiny_qwen3vl

    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """``(train_json, test_json, img_root)`` with 30 images."""
    from trl_ground.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n=30, seed=1)


@pytest.fixture(scope="session")
def real_processor_dir():
    if not (REAL_PROCESSOR / "tokenizer.json").exists():
        pytest.skip(f"real Qwen3-VL processor files not found at {REAL_PROCESSOR}")
    return REAL_PROCESSOR


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped (with the reason) where there is none; run
    them on the GPU machine with ``pytest -m gpu``."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m gpu` on the GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lora_run(tiny_model_dir, synthetic_data, tmp_path_factory):
    """A finished 2-step LoRA run of the tiny model, evaluated at its last step: its folder,
    with ``checkpoint-1``, ``checkpoint-2``, ``final/`` (adapters) and ``final_merged/``."""
    from trl_ground.cli.sft_ground import main

    out = tmp_path_factory.mktemp("lora_run") / "run"
    argv = tiny_run_argv(tiny_model_dir, synthetic_data, out, "--use-lora", "true", "--max-steps", "2", "--save-steps", "1",
                         "--eval-strategy", "steps", "--eval-steps", "2", "--per-device-eval-batch-size", "16")
    assert main(argv) == 0
    return out
