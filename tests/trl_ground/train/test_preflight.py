"""The checks of a training run, made before anything loads (trl_ground/train/preflight.py)."""

from types import SimpleNamespace

import pytest

from trl_ground.config import DataArguments, ModelArguments
from trl_ground.model.source import HUB_TIMEOUT_S
from trl_ground.train import preflight


def data(**kw):
    return DataArguments(**kw)


def test_config_file_problems_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="config file .*nope.yaml: file not found"):
        preflight.check_config_file(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="is a directory"):
        preflight.check_config_file(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_r: 8\n  lora_alpha: [16\n")
    with pytest.raises(ValueError, match=r"not valid YAML: line \d+, column \d+: ") as err:
        preflight.check_config_file(bad)
    assert "\n" not in str(err.value)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        preflight.check_config_file(listed)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00lora")
    with pytest.raises(ValueError, match="not UTF-8"):
        preflight.check_config_file(binary)


def test_data_files(synthetic_data, tmp_path):
    train, test, root = synthetic_data
    preflight.check_data_files(data(train_json=str(train), img_root=str(root), eval_json=str(test)), "steps")
    with pytest.raises(ValueError, match="train_json .*missing.json: file not found.*trl-ground-make-data"):
        preflight.check_data_files(data(train_json=str(tmp_path / "missing.json"), img_root=str(root)))
    with pytest.raises(ValueError, match="img_root .*: directory not found"):
        preflight.check_data_files(data(train_json=str(train), img_root=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="img_root is required"):
        preflight.check_data_files(data(train_json=str(train)))
    # the demo config pointed at other data: its eval_json was never generated
    with pytest.raises(ValueError, match="eval_json .*test.json: file not found.*--eval-strategy no"):
        preflight.check_data_files(data(train_json=str(train), img_root=str(root), eval_json=str(tmp_path / "test.json")), "steps")
    with pytest.raises(ValueError, match="eval_strategy is 'steps' but no eval_json"):
        preflight.check_data_files(data(train_json=str(train), img_root=str(root)), "steps")
    with pytest.raises(ValueError, match="train_labels .*: directory not found"):
        preflight.check_data_files(data(train_format="dota", train_labels=str(tmp_path / "labels"), img_root=str(root)))


def test_four_bit_needs_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="load_in_4bit needs a CUDA GPU.*--no-load-in-4bit"):
        preflight.check_device(ModelArguments(load_in_4bit=True))
    preflight.check_device(ModelArguments(load_in_4bit=False))


def test_local_model_and_adapter_directories(tiny_model_dir, tmp_path):
    preflight.check_model(ModelArguments(model=str(tiny_model_dir), load_in_4bit=False))
    with pytest.raises(ValueError, match="model directory not found"):
        preflight.check_model(ModelArguments(model=str(tmp_path / "no_model"), load_in_4bit=False))
    with pytest.raises(ValueError, match="adapter directory not found"):
        preflight.check_model(ModelArguments(model=str(tiny_model_dir), adapter=str(tmp_path / "no_adapter"), load_in_4bit=False))


def _online(monkeypatch, endpoint):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)


def _record_connections(monkeypatch):
    """Every TCP connection this process opens (the Hub's HTTP client's included), as
    ``(address, timeout)``; they still go through."""
    import socket

    calls, real = [], socket.create_connection

    def recorded(address, timeout=socket.getdefaulttimeout(), *args, **kwargs):
        calls.append((tuple(address), timeout))
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recorded)
    return calls


def test_uncached_hub_model_fails_fast_offline(monkeypatch, tmp_path):
    """Fast: not one connection is tried (no wait on the network, no retries)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    connections = _record_connections(monkeypatch)
    with pytest.raises(ValueError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set.*point --model at"):
        preflight.check_model(SimpleNamespace(model="someone/uncached-model", adapter=None))
    assert connections == []


def test_uncached_hub_model_fails_fast_when_the_hub_is_unreachable(monkeypatch, tmp_path):
    """Fast: one connection attempt to the endpoint with the short timeout, then the error (no
    HTTP request with its retries)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    _online(monkeypatch, "http://127.0.0.1:9")  # the discard port: nothing listens, the connection is refused
    connections = _record_connections(monkeypatch)
    with pytest.raises(ValueError, match="cannot reach the Hugging Face Hub.*point --model at"):
        preflight.check_model(SimpleNamespace(model="someone/uncached-model", adapter=None))
    assert connections == [(("127.0.0.1", 9), HUB_TIMEOUT_S)]
    assert HUB_TIMEOUT_S <= 2


def test_cached_model_with_the_hub_unreachable_switches_to_offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    snapshot = tmp_path / "cache" / "models--someone--cached-model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "cache" / "models--someone--cached-model" / "refs").mkdir()
    (tmp_path / "cache" / "models--someone--cached-model" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    _online(monkeypatch, "http://127.0.0.1:9")
    preflight.check_model(SimpleNamespace(model="someone/cached-model", adapter=None))
    assert constants.HF_HUB_OFFLINE is True
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_run_is_checked_before_anything_loads(monkeypatch, synthetic_data, tiny_model_dir, tmp_path):
    """A missing eval_json fails in the checks: the data, processor and model are never loaded."""
    import trl_ground.train.job as train

    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded before the checks")

    for name in ("build_dataset", "load_processor", "load_model"):
        monkeypatch.setattr(train, name, must_not_load)
    from trl_ground.config import parse_args

    train_json, _, root = synthetic_data
    from tests.helpers import REPO

    argv = ["--config", str(REPO / "configs" / "demo.yaml"), "--model", str(tiny_model_dir), "--train-json", str(train_json), "--img-root", str(root),
            "--eval-json", str(tmp_path / "absent.json"), "--output-dir", str(tmp_path / "run")]
    with pytest.raises(ValueError, match="eval_json .*absent.json: file not found"):
        train.run_sft(*parse_args(argv))


def test_a_logger_that_is_not_installed_is_refused_before_loading(monkeypatch):
    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(ValueError, match=r"report_to wandb: not installed \(pip install wandb\).*--report-to none"):
        preflight.check_reporting(["wandb", "tensorboard"])
    preflight.check_reporting(["tensorboard"])
    preflight.check_reporting("none")
    preflight.check_reporting(None)
