"""The performance switches: ``sampler_merged_weights`` is true, false or auto in YAML, on the
command line and in Python."""

import pytest

from trl_ground.config import GroundingSFTConfig, PerformanceSettings, parse_args
from trl_ground.config.performance import AUTO, true_false_or_auto


@pytest.mark.parametrize(("flags", "expected"), [
    ([], False),
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
    config.write_text(line + "\n")
    performance = parse_args(["--config", str(config)])[3].performance
    assert performance.sampler_merged_weights == expected and type(performance.sampler_merged_weights) is type(expected)
    assert parse_args(["--config", str(config), "--sampler-merged-weights", "auto"])[3].performance.sampler_merged_weights == AUTO


def test_python_takes_true_false_or_auto():
    assert PerformanceSettings().sampler_merged_weights is False
    assert GroundingSFTConfig(performance={"sampler_merged_weights": "auto"}).performance.sampler_merged_weights == AUTO
    assert GroundingSFTConfig(performance={"sampler_merged_weights": True}).performance.sampler_merged_weights is True
    assert PerformanceSettings(sampler_merged_weights=False).sampler_merged_weights is False
    assert PerformanceSettings(sampler_merged_weights="FALSE").sampler_merged_weights is False
    assert PerformanceSettings(sampler="generate", sampler_merged_weights="auto").sampler_merged_weights == AUTO  # no error
    with pytest.raises(ValueError, match="needs sampler='static'"):
        PerformanceSettings(sampler="speculative", sampler_merged_weights=True)
    with pytest.raises(ValueError, match="sampler_merged_weights: expected true, false or auto, got 'sometimes'"):
        PerformanceSettings(sampler_merged_weights="sometimes")
    with pytest.raises(ValueError, match="sampler_merged_weights: expected true, false or auto, got 1"):
        PerformanceSettings(sampler_merged_weights=1)
    with pytest.raises(ValueError, match="invalid true_false_or_auto value: 'sometimes'"):
        parse_args(["--sampler-merged-weights", "sometimes"])
    assert [true_false_or_auto(v) for v in ("yes", "No", " auto ", "1", "off")] == [True, False, AUTO, True, False]
