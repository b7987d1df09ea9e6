"""Speculative sampling drafted from the ground truth: the acceptance rule draws exactly from
the model's distribution (chi-square, fixed seed), the drafts realign on the target, and on
the tiny model the decoding with its per-row masks and positions writes plain decoding's
tokens, in fewer steps when the drafts are right."""

import pytest
import torch
from scipy.stats import chisquare

from tests.helpers import first_batch, make_trainer
from trl_ground.sampling.batches import prompts_from_sft_batch
from trl_ground.sampling.speculative import lookup_drafts, speculative_accept, speculative_sample
from trl_ground.sampling.static import StaticSampler

P0 = [0.5, 0.2, 0.15, 0.1, 0.05]  # next-token distribution; the first draft is token 1
P1 = [0.1, 0.1, 0.6, 0.1, 0.1]  # after token 1; the second draft is token 2
P2 = [0.2, 0.2, 0.2, 0.2, 0.2]  # after tokens 1, 2


def _draw(n, do_sample=True):
    probs = torch.tensor([P0, P1, P2]).expand(n, -1, -1)
    drafts = torch.tensor([[1, 2]]).expand(n, -1)
    n_accepted, next_token = speculative_accept(probs, drafts, do_sample, torch.Generator().manual_seed(0))
    emitted = [([1, 2][:a] + [t])[:2] for a, t in zip(n_accepted.tolist(), next_token.tolist())]
    return n_accepted, emitted


def test_acceptance_rule_draws_exactly_from_the_model():
    n = 40_000
    n_accepted, emitted = _draw(n)
    first = torch.bincount(torch.tensor([e[0] for e in emitted]), minlength=5).numpy()
    assert chisquare(first, [p * n for p in P0]).pvalue > 1e-3  # first token ~ P0, drafted or not
    after_draft = [e[1] for e in emitted if e[0] == 1 and len(e) > 1]
    second = torch.bincount(torch.tensor(after_draft), minlength=5).numpy()
    assert chisquare(second, [p * len(after_draft) for p in P1]).pvalue > 1e-3  # then ~ P1
    assert abs(float((n_accepted >= 1).float().mean()) - P0[1]) < 0.01  # accepted with probability p(draft)
    assert abs(float((n_accepted == 2).float().mean()) - P0[1] * P1[2]) < 0.01


def test_acceptance_rule_greedy_accepts_the_argmax_only():
    n_accepted, emitted = _draw(4, do_sample=False)
    assert n_accepted.tolist() == [0] * 4 and [e[0] for e in emitted] == [0] * 4  # draft 1 is not P0's argmax
    probs = torch.tensor([[P1, P1, P2]])
    n_accepted, next_token = speculative_accept(probs, torch.tensor([[2, 2]]), do_sample=False)
    assert n_accepted.tolist() == [2] and next_token.tolist() == [0]  # both drafts were argmaxes; P2's first argmax


def test_lookup_drafts_realign_after_a_difference():
    target = [10, 11, 12, 13, 14, 15]
    drafts = lookup_drafts([[10, 11], [10, 99, 12], [10, 99, 98], []], [target] * 4, block=3)
    assert drafts[0].tolist() == [12, 13, 14]  # follows the target
    assert drafts[1].tolist() == [13, 14, 15]  # its last token 12 occurs in the target: realigned
    assert drafts[2].tolist() == [13, 14, 15]  # no match: the target from the row's length (3)
    assert drafts[3].tolist() == [10, 11, 12]
    assert lookup_drafts([[14, 15]], [target], block=3)[0].tolist() == [15, 15, 15]  # past the end: the last token


@pytest.fixture(scope="module")
def setup(tiny_model_dir, synthetic_data, tmp_path_factory):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path_factory.mktemp("spec"))
    tok = trainer.processing_class.tokenizer
    return trainer.model, prompts_from_sft_batch(first_batch(trainer), tok.pad_token_id), tok


def test_right_drafts_give_plain_greedy_tokens_in_fewer_steps(setup):
    model, prompts, tok = setup
    plain = StaticSampler(bucket=16).sample(model, prompts, tok, k=2, max_new_tokens=24, do_sample=False)
    targets = [row[m.bool()].tolist() for row, m in zip(plain.completion_ids[::2], plain.completion_mask[::2])]
    fast, stats = speculative_sample(model, prompts, tok, targets, k=2, max_new_tokens=24, do_sample=False, block=4)
    assert torch.equal(fast.completion_ids, plain.completion_ids) and fast.texts == plain.texts
    assert torch.equal(fast.completion_mask, plain.completion_mask)
    assert stats.acceptance > 0.8 and stats.tokens_per_step > 3.5  # up to block + 1 = 5 tokens per step


def test_wrong_drafts_still_give_plain_greedy_tokens(setup):
    model, prompts, tok = setup
    plain = StaticSampler(bucket=16).sample(model, prompts, tok, k=1, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    targets = [[tok.convert_tokens_to_ids("[")] * 5] * len(prompts)
    fast, stats = speculative_sample(model, prompts, tok, targets, max_new_tokens=16, min_new_tokens=16, do_sample=False, block=3)
    assert torch.equal(fast.completion_ids, plain.completion_ids)
    assert stats.tokens_per_step < 1.5


def test_sampled_answers_have_the_contract_of_the_other_samplers(setup):
    model, prompts, tok = setup
    targets = [[tok.convert_tokens_to_ids("[")] * 3] * len(prompts)
    torch.manual_seed(0)
    out, stats = speculative_sample(model, prompts, tok, targets, k=3, temperature=0.8, max_new_tokens=10, min_new_tokens=10)
    assert out.completion_ids.shape == (3 * len(prompts), 10) and out.completion_mask.sum(dim=1).tolist() == [10] * (3 * len(prompts))
    assert not (out.completion_ids == tok.convert_tokens_to_ids("<|image_pad|>")).any()
    assert stats.decode_steps >= 1 and 0.0 <= stats.acceptance <= 1.0


def _first_prompt(prompts):
    from trl_ground.sampling.batches import PromptBatch

    patches = int(prompts.image_grid_thw[0].prod())
    return PromptBatch(prompts.input_ids[:1], prompts.attention_mask[:1], prompts.pixel_values[:patches],
                       prompts.image_grid_thw[:1], None if prompts.mm_token_type_ids is None else prompts.mm_token_type_ids[:1])


def test_speculative_samples_follow_plain_samplings_distribution_on_the_model(setup):
    """Three tokens drawn N times per sampler for one prompt (the last two drafted, from the
    greedy answer, so that drafts are accepted about half of the time); a chi-square test of
    homogeneity of the answers (the 5 most frequent, the rest pooled), fixed seeds."""
    from scipy.stats import chi2_contingency

    model, prompts, tok = setup
    one = _first_prompt(prompts)
    n, temperature = 1200, 0.17
    greedy = StaticSampler().sample(model, one, tok, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    target = greedy.completion_ids[0].tolist()
    torch.manual_seed(1)
    plain = StaticSampler().sample(model, one, tok, k=n, temperature=temperature, max_new_tokens=3, min_new_tokens=3)
    torch.manual_seed(2)
    spec, stats = speculative_sample(model, one, tok, [target], k=n, temperature=temperature, max_new_tokens=3,
                                     min_new_tokens=3, block=2)
    pairs = lambda s: [tuple(r) for r in s.completion_ids.tolist()]  # noqa: E731
    from collections import Counter

    a, b = Counter(pairs(plain)), Counter(pairs(spec))
    top = [p for p, _ in (a + b).most_common(5)]
    table = [[c[p] for p in top] + [n - sum(c[p] for p in top)] for c in (a, b)]
    print(table, stats)
    assert 0.2 < stats.acceptance < 0.9  # both branches of the rule ran
    assert chi2_contingency(table).pvalue > 1e-3
