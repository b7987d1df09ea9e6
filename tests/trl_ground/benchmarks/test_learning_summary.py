"""The learning benchmark's summary from a result JSON, no training (trl_ground/benchmarks/learning_summary.py)."""

from dataclasses import asdict

import pytest

from trl_ground.benchmarks.learning_summary import METRIC_KEYS, goal, summarize
from trl_ground.config.benchmark import LearningBenchSettings


def branch_run(f1, empty=0.1, steps=10, curve=((5, 0.2), (10, 0.4))):
    metrics = {key: 0.5 for key in METRIC_KEYS} | {"f1": f1, "empty_fraction_positive": empty}
    return {"steps": steps, "metrics": metrics, "curve": [{"step": s, "val_f1": v} for s, v in curve]}


def result():
    settings = asdict(LearningBenchSettings()) | {"branch_steps": 10}
    return {
        "settings": settings,
        "warm_start": {"metrics": {"f1": 0.1}, "curve": [{"step": 4, "val_f1": 0.1}]},
        "seconds_per_step_alone": {"sft": 1.0, "hybrid": 2.0},
        "branches": {"sft": [branch_run(0.30), branch_run(0.34)], "hybrid": [branch_run(0.40), branch_run(0.44)]},
    }


def test_mean_and_std_over_seeds_and_the_difference_to_sft():
    summary = summarize(result())
    sft, hybrid = summary["branches"]["sft"], summary["branches"]["hybrid"]
    assert sft["seeds"] == 2 and sft["f1"] == {"mean": 0.32, "std": pytest.approx(0.0283, abs=1e-4)}
    assert summary["noise_band_f1"] == sft["f1"]["std"]
    assert hybrid["f1_minus_sft"] == pytest.approx(0.10) and hybrid["exceeds_sft_noise"] is True
    assert "f1_minus_sft" not in sft
    assert summary["paired"] == {}  # no per-query counts in these runs: no paired comparison


def test_equal_wall_clock_reads_the_curve_at_sfts_time():
    summary = summarize(result())
    # SFT's 10 steps take 10 s; the hybrid (2 s a step) reaches step 5 in that time: val F1 0.2 there
    hybrid = summary["branches"]["hybrid"]["equal_wall_clock"]
    assert hybrid["seconds"] == 10.0 and hybrid["steps"] == 5.0 and hybrid["val_f1"]["mean"] == 0.2
    assert summary["branches"]["sft"]["equal_wall_clock"]["val_f1"]["mean"] == 0.4


def test_goal_sft_gain_over_the_warm_start():
    res = result()
    assert summarize(res)["goal"]["sft_gain_over_warm_start"] == pytest.approx(0.22)
    assert summarize(res)["goal"]["sft_still_learns"] is True
    res["warm_start"]["metrics"]["f1"] = 0.3
    assert goal(res, summarize(res))["sft_still_learns"] is False
    del res["warm_start"]
    assert goal(res, summarize(res))["sft_still_learns"] is None
