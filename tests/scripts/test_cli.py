import json
import subprocess
import sys

import pytest

from tests.helpers import REPO


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)


def test_generator_and_checker_from_the_command_line(tmp_path):
    r = run("scripts/make_synthetic_data.py", "--out", str(tmp_path), "--n", "10", "--seed", "2")
    assert r.returncode == 0, r.stderr
    r = run("scripts/check_data.py", "--train-json", str(tmp_path / "train.json"), "--img-root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for line in ("records: 8 valid", "images found: 8", "boxes per class:", "boxes per image (histogram):", "longest example:"):
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
    levers = ("eager", "compiled", "packed", "merged", "merged_packed", "merged_packed_compiled", "speculative")
    for key in ("sft_step_s", "hybrid_step_s", *(f"hybrid_{lever}_step_s" for lever in levers), "generate_ms_per_token",
                "sampler_ms_per_token", "sampler_merged_compiled_ms_per_token", "speculative_full_acceptance_ms_per_token",
                "sft_peak_gb", "hybrid_peak_gb", "weights_gb"):
        assert key in result, key
    assert result["variants"]["hybrid_merged_packed_compiled_step"] == {
        "sampler": "static", "merged_weights": True, "compiled": True, "packed": True, "grounding_loss": True, "num_generations": 1}
    assert result["sampler_eager_greedy_token_agreement"] == result["sampler_merged_compiled_greedy_token_agreement"] == 1.0
    assert result["speculative_full_acceptance_tokens_per_step"] > 1.0  # drafts from its own greedy answers pass
    assert result["hybrid_merged_step_importance"]["sampling/importance_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    assert result["settings"]["gradient_checkpointing"] is True and "errors" not in result
    assert set(result["ratios"]) >= {"hybrid_over_sft", "hybrid_merged_packed_over_sft", "generate_over_sampler_per_token"}

    # two runs combined into the committed file: the worse run on top, both kept
    better = dict(result, sft_step_s=result["sft_step_s"] * 10, date="better")
    (tmp_path / "b.json").write_text(json.dumps(better))
    combined_path = tmp_path / "combined.json"
    r = run("scripts/bench_step.py", "--combine", str(out), str(tmp_path / "b.json"), "--lora16-runs", str(out),
            "--crowded", str(out), "--out", str(combined_path))
    assert r.returncode == 0, r.stderr[-2000:]
    combined = json.loads(combined_path.read_text())
    assert combined["sft_step_s"] == result["sft_step_s"] and len(combined["runs"]) == 2 and combined["worse_of"] == 2
    assert [r["sft_step_s"] for r in combined["ratio_spread"]] == [result["sft_step_s"], better["sft_step_s"]]
    assert combined["lora16"]["hybrid_step_s"] == result["hybrid_step_s"] and len(combined["crowded"]) == 1


@pytest.mark.slow
def test_learning_benchmark_quick_mode(tmp_path):
    out = tmp_path / "learning.json"
    variant = '{"hybrid_iou0.1": {"base": "hybrid_counts", "flags": ["--iou-threshold", "0.1"]}}'
    r = run("scripts/bench_learning.py", "--quick", "--out", str(out), "--work-dir", str(tmp_path / "work"),
            "--set", "jobs=2", "--set", f"variants={variant}", "--set", 'branches=["sft", "hybrid", "grpo"]',
            "--export-warm", str(tmp_path / "warm"))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["branches"]) == {"sft", "hybrid", "grpo", "hybrid_iou0.1"}
    warm = result["warm_start"]
    assert warm["steps"] == 2 and "f1" in warm["metrics"] and warm["curve"] and warm["nan_at_step"] is None
    split_keys = {"f1", "precision", "recall", "mean_iou", "ap50", "f1_positive", "empty_fraction_positive",
                  "hallucination_fraction_negative", "duplicate_fraction", "unparseable_fraction", "tokens_per_answer"}
    for runs in result["branches"].values():
        for run_ in runs:
            assert run_["curve"] and run_["steps"] == 2 and split_keys <= set(run_["metrics"])
            assert {"step", "train_s", "val_f1"} <= set(run_["curve"][0])
    assert result["branches"]["hybrid_iou0.1"][0]["argv"][-2:] == ["--iou-threshold", "0.1"]
    assert "grounding_cost_group_std" in result["branches"]["hybrid"][0]["signals"]
    summary = result["summary"]["branches"]
    assert set(summary["hybrid"]["f1"]) == {"mean", "std"} and "f1_minus_sft" in summary["hybrid"]
    assert set(result["seconds_per_step_alone"]) == {"sft", "hybrid", "hybrid_counts", "grpo"}
    assert all(v > 0 for v in result["seconds_per_step_alone"].values())
    assert out.with_suffix(".png").stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "warm").iterdir())[0] == "warm_model.tar.part0"

    # the branches again, elsewhere, from the exported warm start (its parts)
    again = tmp_path / "again.json"
    r = run("scripts/bench_learning.py", "--quick", "--out", str(again), "--work-dir", str(tmp_path / "work2"),
            "--warm-from", str(tmp_path / "warm"), "--set", "branches=[\"sft\"]", "--set", "timing_steps=0")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(again.read_text())
    assert result["warm_start"]["from"].endswith("warm") and list(result["branches"]) == ["sft"]
    r = run("scripts/bench_learning.py", "--quick", "--out", str(again), "--work-dir", str(tmp_path / "work3"),
            "--warm-from", str(tmp_path / "warm"), "--set", "image_size=32", "--set", "branches=[]")
    assert r.returncode != 0 and "other settings" in r.stderr


def test_learning_benchmark_branches_are_the_flags_they_claim():
    from trl_ground.benchmarks.learning import branch_flags
    from trl_ground.config.benchmark import BENCH_BRANCHES, LearningBenchSettings

    s = LearningBenchSettings()

    def value(flags, name):
        return flags[flags.index(name) + 1] if name in flags else None

    flags = {name: branch_flags(name, s) for name in BENCH_BRANCHES}
    assert value(flags["sft"], "--grounding-loss") == "false"
    assert value(flags["literal"], "--grounding-gradient") == "none" and value(flags["literal"], "--cost") == "counts"
    assert (value(flags["hybrid_counts"], "--cost"), value(flags["hybrid_counts"], "--credit")) == ("counts", "sequence")
    assert (value(flags["hybrid"], "--cost"), value(flags["hybrid"], "--credit")) == ("dense", "box")
    assert (value(flags["hybrid_sequence"], "--cost"), value(flags["hybrid_sequence"], "--credit")) == ("dense", "sequence")
    assert value(flags["grpo"], "--cost") == "dense" and value(flags["grpo"], "--num-generations") == str(s.num_generations)
    # every branch learns at the same rate from the same warm start
    assert {value(f, "--lr") for f in flags.values()} == {str(s.branch_lr)}
    with pytest.raises(ValueError, match="unknown setting"):
        s.override(["no_such=1"])
    with pytest.raises(ValueError, match="unknown branches"):
        s.override(['branches=["sft", "magic"]'])


@pytest.mark.slow
def test_step_benchmark_modes_for_16_bit_lora_and_crowded_answers(tmp_path):
    out = tmp_path / "step.json"
    # the modes' own part: the 16-bit base and a hybrid step sampling answers as long as the
    # targets (the other variants are the smoke run's)
    r = run("scripts/bench_step.py", "--smoke", "--lora16", "--answer-boxes", "6", "--levers", "merged_packed", "--skip-decode",
            "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    settings = result["settings"]
    assert result["hybrid_step_s"] > 0 and result["hybrid_merged_packed_step_s"] > 0 and "hybrid_eager_step_s" not in result
    assert "hybrid_step_k4_s" not in result and "sampler_ms_per_token" not in result
    assert settings["answer_boxes"] == 6 and settings["quantization"].startswith("none")
    # six boxes of JSON, label included: the sampled answers are as long as the targets
    assert settings["new_tokens_forced"] > 6 * 20


@pytest.mark.slow
def test_drafts_benchmark_on_the_committed_warm_start(tmp_path, monkeypatch):
    from trl_ground.benchmarks.drafts import main

    monkeypatch.chdir(REPO)  # in-process (a subprocess would import torch and transformers again)
    out = tmp_path / "drafts.json"
    assert main(["--prompts", "4", "--blocks", "2", "--max-new-tokens", "24", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    spec = result["speculative"]["block_2"]
    assert 0.0 <= spec["acceptance"] <= 1.0 and 1.0 <= spec["tokens_per_decode_step"] <= 3.0
    skeleton, content = result["skeleton"]["skeleton"], result["skeleton"]["content"]
    assert skeleton["tokens"] > 0 and content["tokens"] > 0
    # the warm start writes the format: its skeleton tokens are far surer than its coordinates
    assert skeleton["mean_probability_left_off"] < content["mean_probability_left_off"]


def test_skeleton_tokens_are_the_formats_own():
    from trl_ground.benchmarks.drafts import is_skeleton

    assert all(map(is_skeleton, ['[{"bbox_2d": [', ", ", '], "label": "', '"}]', "<|im_end|>", "]"]))
    assert not any(map(is_skeleton, ["5", "airplane", " car", "12", ""]))


def test_benchmark_scratch_folder_holds_and_removes_temporary_files():
    import os
    import tempfile

    from trl_ground.benchmarks import scratch_tempdir

    before = tempfile.tempdir
    with scratch_tempdir("bench-") as scratch:
        made = tempfile.mkdtemp()
        assert os.path.dirname(made) == scratch
    assert not os.path.exists(scratch) and tempfile.tempdir == before
