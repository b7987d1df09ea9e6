"""The decode step through ``torch.compile`` (here on the CPU; on CUDA it is also captured in
a graph, tests/gpu): the compiled static and speculative samplers write the eager samplers'
greedy tokens, one compiled graph serves a shape across calls, and a step that cannot be
compiled (or is past the recompile limit) runs without it after one warning."""

import logging

import pytest
import torch

from tests.helpers import first_batch, make_trainer
from trl_ground.sampling.batches import prompts_from_sft_batch
from trl_ground.sampling.speculative import SpeculativeSampler
from trl_ground.sampling.static import StaticSampler


@pytest.fixture(scope="module")
def setup(tiny_model_dir, synthetic_data, tmp_path_factory):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path_factory.mktemp("graphs"))
    batch = first_batch(trainer)
    tok = trainer.processing_class.tokenizer
    targets = [[int(t) for t in row[row != -100]] for row in batch["labels"]]
    return trainer.model, prompts_from_sft_batch(batch, tok.pad_token_id), tok, targets


def test_compiled_static_and_speculative_steps_write_the_eager_tokens(setup):
    from torch._dynamo.utils import counters

    model, prompts, tok, targets = setup
    eager = StaticSampler(bucket=16).sample(model, prompts, tok, k=2, max_new_tokens=12, do_sample=False)
    torch._dynamo.reset()  # dynamo's cache is per process: this test counts its own graphs
    counters.clear()
    static = StaticSampler(bucket=16, compile=True, compile_devices=("cpu",))
    for _ in range(2):  # the second call reuses the first one's compiled graph
        out = static.sample(model, prompts, tok, k=2, max_new_tokens=12, do_sample=False)
        assert torch.equal(out.completion_ids, eager.completion_ids)
    assert not static.graphs.compile_failed and counters["stats"]["unique_graphs"] == 1

    speculative = SpeculativeSampler(block=3, compile=True, compile_devices=("cpu",), bucket=16)
    drafted = speculative.sample(model, prompts, tok, k=2, max_new_tokens=12, do_sample=False, targets=targets)
    assert torch.equal(drafted.completion_ids, eager.completion_ids) and not speculative.graphs.compile_failed
    assert all(state.width == 4 for state in speculative.graphs.states.values())


def test_a_step_that_cannot_be_compiled_runs_without_it(setup, monkeypatch, caplog):
    model, prompts, tok, _ = setup

    def cannot_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("no compiler here")
        return compiled

    monkeypatch.setattr(torch, "compile", cannot_compile)
    eager = StaticSampler(bucket=16).sample(model, prompts, tok, k=1, max_new_tokens=8, do_sample=False)
    sampler = StaticSampler(bucket=16, compile=True, compile_devices=("cpu",))
    with caplog.at_level(logging.WARNING):
        out = sampler.sample(model, prompts, tok, k=1, max_new_tokens=8, do_sample=False)
    assert torch.equal(out.completion_ids, eager.completion_ids) and sampler.graphs.compile_failed
    assert sum("torch.compile of the decode step failed" in r.message for r in caplog.records) == 1


def test_a_shape_past_the_recompile_limit_runs_without_compiling(setup, monkeypatch, caplog):
    import trl_ground.sampling.static as static

    model, prompts, tok, _ = setup
    torch._dynamo.reset()
    monkeypatch.setattr(static, "_RECOMPILE_LIMIT", 1)
    eager = StaticSampler(bucket=16).sample(model, prompts, tok, k=1, max_new_tokens=40, do_sample=False)
    sampler = StaticSampler(bucket=16, compile=True, compile_devices=("cpu",))
    sampler.sample(model, prompts, tok, k=1, max_new_tokens=4, do_sample=False)  # the one shape the limit allows
    assert not sampler.graphs.compile_failed
    with caplog.at_level(logging.WARNING):
        out = sampler.sample(model, prompts, tok, k=1, max_new_tokens=40, do_sample=False)  # another cache bucket
    assert sampler.graphs.compile_failed and torch.equal(out.completion_ids, eager.completion_ids)
    (warning,) = [r.getMessage() for r in caplog.records if "torch.compile of the decode step failed" in r.getMessage()]
    assert "limit" in warning
    torch._dynamo.reset()
