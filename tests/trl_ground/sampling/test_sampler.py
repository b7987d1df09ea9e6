"""The sampler contract: the three samplers satisfy the protocol and write the same greedy
answers on the tiny model; the factory picks one once (generate where parameters move);
the trainer trains with the speculative sampler, drafting from the batch's target answers."""

import logging
import math

import pytest
import torch

from tests.helpers import first_batch, make_trainer
from trl_ground.sampling import samplers as sampler_module
from trl_ground.sampling.batches import prompts_from_sft_batch, sft_answer_ids
from trl_ground.sampling.generation import GenerateSampler
from trl_ground.sampling.samplers import SAMPLER_NAMES, Sampler, make_sampler
from trl_ground.sampling.speculative import SpeculativeSampler
from trl_ground.sampling.static import StaticSampler
from trl_ground.train import trainer as trainer_module


@pytest.fixture(scope="module")
def setup(tiny_model_dir, synthetic_data, tmp_path_factory):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path_factory.mktemp("sampler"))
    batch = first_batch(trainer)
    tok = trainer.processing_class.tokenizer
    return trainer.model, batch, prompts_from_sft_batch(batch, tok.pad_token_id), tok


def _assert_same_samples(a, b):
    assert torch.equal(a.completion_ids, b.completion_ids) and a.texts == b.texts
    assert torch.equal(a.completion_mask, b.completion_mask) and torch.equal(a.truncated, b.truncated)


@pytest.mark.parametrize("min_new_tokens", [0, 6])
def test_the_three_samplers_satisfy_the_protocol_and_agree_greedily(setup, min_new_tokens):
    model, batch, prompts, tok = setup
    samplers = [GenerateSampler(), StaticSampler(bucket=16), SpeculativeSampler(block=3)]
    assert all(isinstance(s, Sampler) for s in samplers)
    targets = sft_answer_ids(batch)  # what the trainer passes; the others ignore them
    out = [s.sample(model, prompts, tok, k=2, max_new_tokens=20, do_sample=False, min_new_tokens=min_new_tokens, targets=targets)
           for s in samplers]
    assert out[0].completion_ids.shape[0] == 2 * len(prompts)
    for other in out[1:]:
        _assert_same_samples(other, out[0])
    if min_new_tokens:
        assert (out[0].completion_mask.sum(dim=1) >= min_new_tokens).all()
    assert samplers[2].last_stats.decode_steps >= 1


def test_the_targets_are_the_labelled_answers_of_the_sft_batch(setup):
    _, batch, prompts, tok = setup
    targets = sft_answer_ids(batch)
    assert len(targets) == len(prompts)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for row, target in enumerate(targets):
        assert target and target[-1] == end
        labelled = batch["labels"][row] != -100
        assert batch["input_ids"][row][labelled].tolist() == target


def test_the_speculative_sampler_needs_one_target_per_prompt(setup):
    model, batch, prompts, tok = setup
    with pytest.raises(ValueError, match="one target answer per prompt"):
        SpeculativeSampler().sample(model, prompts, tok, max_new_tokens=4)
    with pytest.raises(ValueError, match="one target answer per prompt"):
        SpeculativeSampler().sample(model, prompts, tok, max_new_tokens=4, targets=sft_answer_ids(batch)[:1])


def test_make_sampler_chooses_once_and_gives_generate_where_parameters_move(caplog):
    kinds = {name: type(make_sampler(name)) for name in SAMPLER_NAMES}
    assert kinds == {"static": StaticSampler, "generate": GenerateSampler, "speculative": SpeculativeSampler}
    assert make_sampler("static", merged_weights=True).merged_weights
    speculative = make_sampler("speculative", merged_weights=True, compile=True, speculative_block=3)
    assert speculative.merged_weights and speculative.graphs.compile and speculative.block == 3
    with caplog.at_level(logging.WARNING, logger=sampler_module.__name__):
        assert isinstance(make_sampler("generate", parameters_move=True), GenerateSampler)
        assert not caplog.records  # nothing to say
        for name in ("static", "speculative"):
            assert isinstance(make_sampler(name, parameters_move=True), GenerateSampler)
        make_sampler("static", parameters_move=True, merged_weights=True, compile=True)
    assert [r.getMessage() for r in caplog.records] == [
        "sampler 'static': parameters are gathered per call under FSDP / ZeRO-3, sampling with generate",
        "sampler 'speculative': parameters are gathered per call under FSDP / ZeRO-3, sampling with generate",
        "sampler 'static' (merged weights and compile unused): parameters are gathered per call under FSDP / ZeRO-3, sampling with generate",
    ]
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_sampler("vllm")


def test_the_trainer_makes_its_sampler_once_from_the_config(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    assert isinstance(make_trainer(tiny_model_dir, synthetic_data, tmp_path / "a").sampler, StaticSampler)
    assert isinstance(make_trainer(tiny_model_dir, synthetic_data, tmp_path / "b", "--sampler", "generate").sampler, GenerateSampler)
    monkeypatch.setattr(trainer_module.GroundingSFTTrainer, "_parameters_move", lambda self: True)  # as under FSDP / ZeRO-3
    assert isinstance(make_trainer(tiny_model_dir, synthetic_data, tmp_path / "c", "--sampler", "speculative").sampler, GenerateSampler)


def test_training_with_the_speculative_sampler(tiny_model_dir, synthetic_data, tmp_path):
    trainer = make_trainer(
        tiny_model_dir, synthetic_data, tmp_path, "--sampler", "speculative", "--max-steps", "3", "--logging-steps", "1",
        "--eval-strategy", "steps", "--eval-steps", "3", "--save-strategy", "no", "--max-completion-length", "12",
    )
    sampler = trainer.sampler
    assert isinstance(sampler, SpeculativeSampler)
    calls = []
    real = sampler.sample

    def recording(model, prompts, tokenizer, **kw):
        samples = real(model, prompts, tokenizer, **kw)
        calls.append((len(prompts), kw["targets"], kw["do_sample"], sampler.last_stats))
        return samples

    sampler.sample = recording
    trainer.train()
    assert sum(do_sample for _, _, do_sample, _ in calls) == 3 * trainer.args.gradient_accumulation_steps  # every micro-batch sampled
    assert any(not do_sample for _, _, do_sample, _ in calls)  # and the evaluation, greedy
    for n_prompts, targets, _, stats in calls:
        assert len(targets) == n_prompts and all(targets)  # one target answer per prompt
        assert stats.drafted > 0 and stats.decode_steps >= 1
    logged = [r for r in trainer.state.log_history if "grounding_cost" in r and "loss" in r]
    assert [r["step"] for r in logged] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in logged)
    assert all(0 <= r["sampling/draft_acceptance"] <= 1 and r["sampling/tokens_per_step"] >= 1 for r in logged)
    assert any("eval_grounding_cost" in r for r in trainer.state.log_history)


def test_only_a_sampler_that_drafts_gets_the_target_answers(tiny_model_dir, synthetic_data, tmp_path):
    """Extracting the targets copies the labels to the host: the other samplers are spared it."""
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path, "--sampler", "generate", "--max-completion-length", "4")
    seen = []
    real = trainer.sampler.sample
    trainer.sampler.sample = lambda *a, **kw: seen.append(kw["targets"]) or real(*a, **kw)
    batch = first_batch(trainer)
    trainer.model.train()
    trainer.compute_loss(trainer.model, dict(batch))
    assert seen == [None] and not trainer.sampler.uses_targets and SpeculativeSampler.uses_targets
