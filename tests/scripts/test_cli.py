import json
import subprocess
import sys

import pytest

from ..conftest import REPO


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)


def test_generator_and_checker_from_the_command_line(tmp_path):
    r = run("scripts/make_synthetic_data.py", "--out", str(tmp_path), "--n", "10", "--seed", "2")
    assert r.returncode == 0, r.stderr
    r = run("scripts/check_data.py", "--train-json", str(tmp_path / "train.json"), "--img-root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for line in ("records: 8 valid", "images found: 8", "boxes per class:", "boxes per image (histogram):", "longest target answer:"):
        assert line in r.stdout


def test_checker_reports_bad_data_without_traceback(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([{"image": "missing.png", "objects": []}]))
    r = run("scripts/check_data.py", "--train-json", str(tmp_path / "bad.json"), "--img-root", str(tmp_path))
    assert r.returncode == 2
    assert "record 0, field 'image'" in r.stderr and "Traceback" not in r.stderr


def test_sft_script_rejects_a_bad_config_before_loading(tmp_path):
    r = run("scripts/sft_ground.py", "--config", "configs/qlora.yaml", "--lora-r", "-3", "--output-dir", str(tmp_path))
    assert r.returncode == 2 and "lora_r" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_step_benchmark_runs_in_smoke_mode(tmp_path):
    out = tmp_path / "step.json"
    r = run("scripts/bench_step.py", "--smoke", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    for key in ("sft_step_s", "hybrid_step_s", "hybrid_step_k4_s", "generate_ms_per_token", "sampler_ms_per_token",
                "sft_peak_gb", "hybrid_peak_gb", "greedy_token_agreement"):
        assert key in result
    assert result["greedy_token_agreement"] == 1.0


@pytest.mark.slow
def test_learning_benchmark_quick_mode(tmp_path):
    out = tmp_path / "learning.json"
    variant = '{"hybrid_iou0.1": {"base": "hybrid", "flags": ["--iou-threshold", "0.1"]}}'
    r = run("scripts/bench_learning.py", "--quick", "--out", str(out), "--work-dir", str(tmp_path / "work"),
            "--set", "jobs=2", "--set", f"variants={variant}", "--export-warm", str(tmp_path / "warm.tar"))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["branches"]) == {"sft", "literal", "hybrid", "grpo", "hybrid_lora", "hybrid_iou0.1"}
    assert "f1" in result["warm_start"] and result["warm_start"]["steps"] == 2
    for runs in result["branches"].values():
        for run_ in runs:
            assert run_["curve"] and run_["steps"] == 2
            assert {"f1", "precision", "recall", "mean_iou", "ap50", "unparseable_fraction", "empty_fraction"} <= set(run_["metrics"])
    assert result["branches"]["hybrid_iou0.1"][0]["argv"][-2:] == ["--iou-threshold", "0.1"]
    assert "grounding_cost_group_std" in result["branches"]["hybrid"][0]["signals"]
    assert set(result["summary"]["hybrid"]["f1"]) == {"mean", "spread"}
    assert out.with_suffix(".png").stat().st_size > 1000

    # the branches again, elsewhere, from the exported warm start
    import tarfile

    with tarfile.open(tmp_path / "warm.tar") as tar:
        tar.extractall(tmp_path / "moved", filter="data")
    again = tmp_path / "again.json"
    r = run("scripts/bench_learning.py", "--quick", "--out", str(again), "--work-dir", str(tmp_path / "work2"),
            "--warm-from", str(tmp_path / "moved" / "warm_model"), "--set", "branches=[\"sft\"]")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(again.read_text())
    assert result["warm_start"]["from"].endswith("warm_model") and list(result["branches"]) == ["sft"]
    r = run("scripts/bench_learning.py", "--quick", "--out", str(again), "--work-dir", str(tmp_path / "work3"),
            "--warm-from", str(tmp_path / "moved" / "warm_model"), "--set", "image_size=32", "--set", "branches=[]")
    assert r.returncode != 0 and "other settings" in r.stderr
