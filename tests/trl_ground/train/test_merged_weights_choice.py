"""``sampler_merged_weights`` resolved once when the trainer is built: auto is off on a CPU,
an explicit true is on, one info line says what and why; auto's other reasons to stay off,
and the arithmetic it logs on a GPU (its readings of the device faked here)."""

import logging
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import make_trainer, tiny_run_argv
from trl_ground.config import PerformanceSettings
from trl_ground.config.performance import GB
from trl_ground.sampling.merged_weights import mergeable_lora_linears, merged_nbytes
from trl_ground.train import merged_weights_choice
from trl_ground.train.merged_weights_choice import MergedWeightsChoice, choose_merged_weights


class _Lines(logging.Handler):
    """The trainer's info lines about merged sampling weights."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        if record.getMessage().startswith("merged sampling weights"):
            self.lines.append(record.getMessage())


def _build_and_log(*args) -> tuple:
    log, lines = logging.getLogger("trl_ground.train.trainer"), _Lines()
    level = log.level
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    try:
        return make_trainer(*args), lines.lines
    finally:
        log.removeHandler(lines)
        log.setLevel(level)


@pytest.fixture(scope="module")
def auto_trainer(tiny_model_dir, synthetic_data, tmp_path_factory):
    """A trainer of the tiny LoRA model at the defaults (auto), on the CPU, and its log lines."""
    return _build_and_log(tiny_model_dir, synthetic_data, tmp_path_factory.mktemp("auto"))


def test_auto_is_off_on_a_cpu_and_true_is_on(auto_trainer, tiny_model_dir, synthetic_data, tmp_path):
    trainer, lines = auto_trainer
    assert trainer.args.performance.sampler_merged_weights == "auto"
    assert trainer.sampler_merged_weights is False and not trainer.sampler.merged_weights
    assert lines == ["merged sampling weights: off (auto: on cpu, no CUDA graph to speed up)"]
    trainer, lines = _build_and_log(tiny_model_dir, synthetic_data, tmp_path, "--sampler-merged-weights", "true")
    assert trainer.sampler_merged_weights is True and trainer.sampler.merged_weights
    assert lines == ["merged sampling weights: on (sampler_merged_weights: true)"]


def test_the_command_prints_what_auto_decided(tiny_model_dir, synthetic_data, tmp_path, capsys):
    from trl_ground.cli.sft_ground import main

    def argv(out, *extra):
        return tiny_run_argv(tiny_model_dir, synthetic_data, tmp_path / out, "--use-lora", "true", "--max-steps", "1",
                             "--eval-strategy", "no", "--save-strategy", "no", *extra)

    assert main(argv("auto")) == 0
    assert "merged sampling weights: off (auto: on cpu, no CUDA graph to speed up)" in capsys.readouterr().out.splitlines()
    assert main(argv("false", "--sampler-merged-weights", "false")) == 0
    assert "merged sampling weights" not in capsys.readouterr().out  # an explicit choice needs no word


def test_auto_stays_off_before_counting_memory(auto_trainer):
    model = auto_trainer[0].model
    auto = PerformanceSettings()

    def reason(performance=auto, parameters_move=False, samples=True, of=model):
        choice = choose_merged_weights(of, performance, dtype=torch.float32, rows=4, parameters_move=parameters_move, samples=samples)
        assert not choice.on
        return choice.reason

    assert reason(samples=False) == "auto: no answers are sampled (grounding_loss is off)"
    assert reason(PerformanceSettings(sampler="generate")) == "auto: the 'generate' sampler samples from the model as it is"
    assert reason(parameters_move=True) == "auto: parameters are gathered per call under FSDP / ZeRO-3"
    assert reason() == "auto: on cpu, no CUDA graph to speed up"
    assert reason(PerformanceSettings(sampler_merged_weights=False)) == "sampler_merged_weights: false"


def test_on_a_gpu_auto_logs_its_arithmetic(auto_trainer, monkeypatch):
    """The device's readings (memory allocated, its total) faked on the CPU model."""
    model = auto_trainer[0].model
    merged = merged_nbytes(mergeable_lora_linears(model), torch.bfloat16)
    monkeypatch.setattr(merged_weights_choice, "_why_not", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 6 * GB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=24 * GB))

    def choose(rows, budget_gb=None):
        performance = PerformanceSettings(sampler_memory_budget_gb=budget_gb)
        return choose_merged_weights(model, performance, dtype=torch.bfloat16, rows=rows, parameters_move=False)

    on = choose(16)  # 6 GB + a few kB + 8 GB <= 24 GB: the GPU's memory, no 4-bit base here
    assert on == MergedWeightsChoice(True, f"auto: 6.0 GB resident + {merged / GB:.1f} GB merged + 8.0 GB reserve for 16 rows "
                                           "<= 24.0 GB budget (the GPU's memory)")
    assert str(on).startswith("merged sampling weights: on (auto: 6.0 GB resident")
    assert choose(36).reason.endswith("+ 18.0 GB reserve for 36 rows > 24.0 GB budget (the GPU's memory)")
    assert choose(4, budget_gb=10.1).reason.endswith("+ 4.0 GB reserve for 4 rows <= 10.1 GB budget (sampler_memory_budget_gb)")
    assert not choose(4, budget_gb=10).on  # 6 GB + the merged copies + 4 GB
