"""The reward benchmark on a few cases (trl_ground/benchmarks/rewards.py)."""

import json
import os

import numpy as np

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def import_benchmark(monkeypatch):
    """The module sets these thread counts on import (for the processes it starts): keep them
    out of the other tests' subprocesses."""
    for var in THREAD_VARS:
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    from trl_ground.benchmarks import rewards

    return rewards


def test_cases_are_noisy_copies_of_the_truth(monkeypatch):
    from rewards import parse_boxes

    bench = import_benchmark(monkeypatch)
    cases = bench.make_cases(20, 6, seed=1)
    again = bench.make_cases(20, 6, seed=1)
    assert len(cases) == 20 and [text for text, _ in cases] == [text for text, _ in again]  # seeded
    for text, gt in cases:
        pred = parse_boxes(text).boxes
        assert 4 <= len(gt) <= 8 and abs(len(pred) - len(gt)) <= 1
        assert (gt[:, 2:] > gt[:, :2]).all() and ((gt >= 0) & (gt <= 1)).all()


def test_main_writes_its_result(monkeypatch, tmp_path, capsys):
    bench = import_benchmark(monkeypatch)
    out = tmp_path / "rewards.json"
    assert bench.main(["--n", "40", "--boxes", "5", "--repeats", "1", "--batch", "16", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["completions"] == 40 and result["method"] == "hungarian" and result["batch"] == 16
    assert result["seconds_median"] > 0 and result["one_by_one_seconds_median"] > 0
    assert 3 <= result["mean_boxes"] <= 7 and np.isfinite(result["completions_per_s"])
    assert json.loads(capsys.readouterr().out) == result
