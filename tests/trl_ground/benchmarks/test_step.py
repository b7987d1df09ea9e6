"""The step benchmark's ratios, targets and combined runs, from results (no model here;
the CPU smoke run is in tests/scripts/test_cli.py) (trl_ground/benchmarks/step.py)."""

import json

import pytest

from trl_ground.benchmarks.step import combine_runs, main, ratios_and_targets


def run_result(sft, hybrid, merged=None, generate=None, sampler=None, peak=10.0, date="d"):
    result = {"date": date, "gpu": "g", "settings": {"batch": 2}, "sft_step_s": sft, "hybrid_step_s": hybrid,
              "sft_peak_gb": 8.0, "hybrid_peak_gb": peak, "hybrid_step_peak_gb": peak, "sft_step_peak_gb": 8.0}
    if merged is not None:
        result["hybrid_merged_step_s"] = merged
    if generate is not None:
        result["generate_ms_per_token"], result["sampler_ms_per_token"] = generate, sampler
    return result


def test_ratios_and_the_targets_this_run_measured():
    ratios, targets = ratios_and_targets(run_result(1.0, 2.5, merged=1.8, generate=30.0, sampler=1.5), lora16=False)
    assert ratios == {"hybrid_over_sft": 2.5, "hybrid_merged_over_sft": 1.8, "generate_over_sampler_per_token": 20.0}
    assert targets == {"hybrid_over_sft<=2.0 (best variant)": True, "hybrid_over_sft<=2.0 (default settings)": False,
                       "generate_over_sampler>=15 (default sampler)": True, "hybrid_peak_gb<=16": True}
    _, targets = ratios_and_targets(run_result(1.0, 1.5, peak=30.0), lora16=True)
    assert targets == {"hybrid_over_sft<=2.0 (best variant)": True, "hybrid_over_sft<=2.0 (default settings)": True,
                       "hybrid_step_peak<=sft+20GB": False}


def test_combined_runs_put_the_worse_run_on_top(tmp_path):
    paths = []
    for i, (sft, hybrid) in enumerate([(1.0, 1.5), (1.0, 1.9), (2.0, 2.2)]):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(run_result(sft, hybrid, date=f"run{i}")))
    combined = combine_runs([str(p) for p in paths], [str(paths[0])], [])
    assert combined["worse_of"] == 3 and combined["date"] == "run1" and combined["hybrid_step_s"] == 1.9
    assert [(r["sft_step_s"], r["hybrid_over_sft"]) for r in combined["ratio_spread"]] == [(1.0, 1.5), (1.0, 1.9), (2.0, 1.1)]
    assert combined["lora16"]["hybrid_step_s"] == 1.5 and "crowded" not in combined


def test_without_a_gpu_it_stops_at_once(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["--out", str(tmp_path / "unused.json")]) == 2
    assert "measures a CUDA GPU" in capsys.readouterr().err and not (tmp_path / "unused.json").exists()
