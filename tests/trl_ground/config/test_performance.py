"""The performance switches: ``sampler_merged_weights`` is true, false or auto in YAML, on the
command line and in Python, and auto's memory rule gives the answers the measured 8B figures
call for."""

import pytest

from trl_ground.config import GroundingSFTConfig, PerformanceSettings, parse_args
from trl_ground.config.performance import (
    AUTO,
    GB,
    memory_budget_bytes,
    merged_weights_fit,
    sampling_reserve_bytes,
    true_false_or_auto,
)


@pytest.mark.parametrize(("flags", "expected"), [
    ([], AUTO),
    (["--sampler-merged-weights"], True),  # the flag alone, as before
    (["--sampler-merged-weights", "--pack-samples"], True),
    (["--sampler-merged-weights", "true"], True),
    (["--sampler-merged-weights", "false"], False),
    (["--sampler_merged_weights=False"], False),
    (["--sampler-merged-weights", "auto"], AUTO),
])
def test_the_flag_is_true_false_or_auto(flags, expected):
    value = parse_args(flags)[3].performance.sampler_merged_weights
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("line", "expected"), [
    ("sampler_merged_weights: auto", AUTO),
    ("sampler_merged_weights: true", True),
    ("sampler_merged_weights: false", False),
    ("sampler_merged_weights: 'false'", False),
])
def test_the_yaml_key_is_true_false_or_auto_and_a_flag_overrides_it(line, expected, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(line + "\nsampler_memory_budget_gb: 24\n")
    performance = parse_args(["--config", str(config)])[3].performance
    assert performance.sampler_merged_weights == expected and type(performance.sampler_merged_weights) is type(expected)
    assert performance.sampler_memory_budget_gb == 24.0
    assert parse_args(["--config", str(config), "--sampler-merged-weights", "auto"])[3].performance.sampler_merged_weights == AUTO


def test_python_takes_true_false_or_auto():
    assert PerformanceSettings().sampler_merged_weights == AUTO
    assert GroundingSFTConfig(performance={"sampler_merged_weights": "auto"}).performance.sampler_merged_weights == AUTO
    assert GroundingSFTConfig(performance={"sampler_merged_weights": True}).performance.sampler_merged_weights is True
    assert PerformanceSettings(sampler_merged_weights=False).sampler_merged_weights is False
    assert PerformanceSettings(sampler_merged_weights="FALSE").sampler_merged_weights is False
    assert PerformanceSettings(sampler="generate", sampler_merged_weights="auto").sampler_merged_weights == AUTO  # no error
    with pytest.raises(ValueError, match="needs sampler='static' or 'speculative'"):
        PerformanceSettings(sampler="generate", sampler_merged_weights=True)
    assert PerformanceSettings(sampler="speculative", sampler_merged_weights=True).sampler_merged_weights is True
    with pytest.raises(ValueError, match="sampler_compile needs sampler='static' or 'speculative'"):
        PerformanceSettings(sampler="generate", sampler_compile=True)
    with pytest.raises(ValueError, match="speculative_block must be >= 1"):
        PerformanceSettings(sampler="speculative", speculative_block=0)
    with pytest.raises(ValueError, match="sampler_merged_weights: expected true, false or auto, got 'sometimes'"):
        PerformanceSettings(sampler_merged_weights="sometimes")
    with pytest.raises(ValueError, match="sampler_merged_weights: expected true, false or auto, got 1"):
        PerformanceSettings(sampler_merged_weights=1)
    with pytest.raises(ValueError, match="sampler_memory_budget_gb must be > 0"):
        PerformanceSettings(sampler_memory_budget_gb=0)
    with pytest.raises(ValueError, match="invalid true_false_or_auto value: 'sometimes'"):
        parse_args(["--sampler-merged-weights", "sometimes"])
    assert [true_false_or_auto(v) for v in ("yes", "No", " auto ", "1", "off")] == [True, False, AUTO, True, False]


# The 8B figures (BENCHMARKS.md, benchmarks/step_runs/): memory allocated once the model is
# loaded, and the merged copies of its 252 attention and MLP linears in bf16, counted as the
# rule counts them (36 layers x 192,937,984 weights x 2 bytes).
QLORA_RESIDENT, QLORA_RESIDENT_MEASURED, LORA16_RESIDENT = 5.9 * GB, 6.57 * GB, 17.7 * GB
MERGED_8B = 36 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 12288) * 2
H200, GPU_24GB = 139 * GB, 24 * GB


def _fits(resident, rows, budget_gb=None, *, in_4bit, total):
    budget = memory_budget_bytes(budget_gb, base_in_4bit=in_4bit, device_total_bytes=total)
    return merged_weights_fit(resident, MERGED_8B, sampling_reserve_bytes(rows), budget)


@pytest.mark.parametrize("rows", [4, 16, 40])  # batch 2 or 8, K = 1 (4, 16 rows); batch 8, K = 4 (40)
def test_the_8b_qlora_default_stays_off_and_16bit_lora_is_on_on_an_h200(rows):
    assert MERGED_8B == 13_891_534_848
    for resident in (QLORA_RESIDENT, QLORA_RESIDENT_MEASURED):
        assert not _fits(resident, rows, in_4bit=True, total=H200)  # the 16 GB QLoRA budget, even on an H200
    assert _fits(LORA16_RESIDENT, rows, in_4bit=False, total=H200)
    assert not _fits(LORA16_RESIDENT, rows, in_4bit=False, total=GPU_24GB)


def test_the_budget_and_the_reserve():
    assert sampling_reserve_bytes(4) == sampling_reserve_bytes(8) == 4 * GB  # the floor
    assert sampling_reserve_bytes(16) == 8 * GB and sampling_reserve_bytes(40) == 20 * GB  # 0.5 GB a row
    assert memory_budget_bytes(None, base_in_4bit=True, device_total_bytes=H200) == 16 * GB
    assert memory_budget_bytes(None, base_in_4bit=False, device_total_bytes=H200) == H200
    assert memory_budget_bytes(40, base_in_4bit=True, device_total_bytes=H200) == 40 * GB
    # a QLoRA user who gives it 40 GB gets merged weights: 5.9 + 13.9 + 8 GB at batch 8
    assert _fits(QLORA_RESIDENT, 16, 40, in_4bit=True, total=H200)
    # the rule is an inequality that holds at equality
    assert merged_weights_fit(1, 2, 3, 6) and not merged_weights_fit(1, 2, 3, 5)
    # 16-bit LoRA at batch 8 on a 48 GB GPU: on at K = 1 (39.6 GB), off at K = 4 (51.6 GB)
    assert _fits(LORA16_RESIDENT, 16, in_4bit=False, total=48 * GB)
    assert not _fits(LORA16_RESIDENT, 40, in_4bit=False, total=48 * GB)
