"""Box-level credit: which advantage each token carries, and what the gradient then does."""

import numpy as np
import pytest
import torch

from rewards import ScoringSettings
from rewards.dense import marginal_contributions
from rewards.layout import answer_layout
from trl_ground.loss.policy_gradient import advantages, policy_surrogate
from trl_ground.loss.rollout import segment_costs, token_advantages
from trl_ground.model.tiny import build_tiny_processor

GOOD = '{"bbox_2d": [100, 100, 300, 300], "label": "ship"}'
BAD = '{"bbox_2d": [700, 700, 900, 900], "label": "ship"}'
GT = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.6, 0.6]]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_processor().tokenizer


def encode(tokenizer, texts):
    enc = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="right", return_tensors="pt")
    return enc.input_ids, enc.attention_mask


def test_layout_finds_objects_and_the_closing_bracket():
    text = f"[{GOOD}, {BAD}]"
    layout = answer_layout(text)
    assert layout.open_end == 1 and [text[a:b] for a, b in layout.objects] == [GOOD, BAD] and text[layout.close] == "]"
    cut = answer_layout(f"[{GOOD}, " + BAD[:20])
    assert len(cut.objects) == 1 and cut.close is None
    assert answer_layout("[]").objects == () and answer_layout("[]").close == 1
    assert answer_layout('```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a]}"}]\n```').close is not None  # brackets in strings
    for text in ("no boxes here", "[1, 2, 3, 4]", '["a", "b"]', ""):
        assert answer_layout(text) is None


def test_segments_give_each_box_its_marginal_contribution():
    s = ScoringSettings()
    text = f"[{GOOD}, {BAD}]"
    scored = s.score([text], [GT])[0]
    q_good, q_bad = scored.dense.box_quality
    assert q_good == 1.0 and q_bad < 0.2
    layout = answer_layout(text)
    segs = segment_costs(scored, layout, 0.3)
    # T = 1 + q_bad, N = M = 2: Delta_j = 2T / 4 - 2(T - q_j) / 3
    total = q_good + q_bad
    delta_good, delta_bad = total / 2 - 2 * q_bad / 3, total / 2 - 2 * q_good / 3
    assert [end for end, _ in segs[:-1]] == [layout.objects[0][0] + 1, layout.objects[0][1], layout.objects[1][1]]
    assert [v for _, v in segs] == [0.3, pytest.approx(-delta_good), pytest.approx(-delta_bad), 0.3]  # {, good, bad, ] and the rest
    assert delta_good > 0 > delta_bad
    assert segment_costs(scored, layout, 0.3, norm="max")[1][1] == pytest.approx(-(total / 2 - q_bad / 2))
    # a true positive whose quality is below what the other answers' boxes reach is still pushed up
    sloppy_box = '{"bbox_2d": [100, 100, 300, 340], "label": "ship"}'
    sloppy = s.score([f"[{sloppy_box}]"], [GT])[0]
    assert sloppy.terms.f1 > 0 and sloppy.dense.box_quality[0] < 1.0
    assert segment_costs(sloppy, answer_layout(f"[{sloppy_box}]"), 0.0)[1][1] < 0
    # [] decides only whether to answer with boxes: the answer's advantage throughout
    empty = s.score(["[]"], [GT])[0]
    assert segment_costs(empty, answer_layout("[]"), 0.8) == [(1 << 62, 0.8)]
    negative = s.score([f"[{GOOD}, {BAD}]"], [[]])[0]
    assert [v for _, v in segment_costs(negative, answer_layout(f"[{GOOD}, {BAD}]"), 0.2)] == [0.2, 1.0, 1.0, 0.2]  # boxes where there are none
    garbage = s.score(["the ship is at the top"], [GT])[0]
    assert segment_costs(garbage, answer_layout("the ship is at the top"), 0.7) is None


def test_the_gradient_raises_a_good_box_and_lowers_a_bad_one(tokenizer):
    """Hand-made answers, and a policy whose every token has its own logits: one gradient
    step on the surrogate raises the log-probability of the good box's tokens, lowers the
    bad box's, and (sequence credit) moves both the same way."""
    texts = [f"[{GOOD}, {BAD}]", "[]"]
    ids, mask = encode(tokenizer, texts)
    s = ScoringSettings()
    scored = s.score(texts, [GT, GT])
    cost = torch.tensor([s.answer_cost(x) for x in scored])
    adv = advantages(cost, 2, None)
    token_adv, located = token_advantages(scored, texts, adv, ids, mask, tokenizer)
    assert located == 1.0
    layout = answer_layout(texts[0])
    ends = np.cumsum([len(tokenizer.decode([t])) for t in ids[0][mask[0] == 1].tolist()])
    good_tokens = torch.tensor((ends > layout.open_end) & (ends <= layout.objects[0][1]))
    bad_tokens = torch.tensor((ends > layout.objects[0][1]) & (ends <= layout.objects[1][1]))

    def step(advantage):
        logits = torch.zeros(*ids.shape, len(tokenizer), requires_grad=True)
        logp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        policy_surrogate(advantage, logp, mask, loss_type="dr_grpo", max_new_tokens=ids.shape[1]).backward()
        with torch.no_grad():
            new = torch.log_softmax(logits - 10.0 * logits.grad, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        return (new - logp.detach())[0]

    change = step(token_adv)
    assert (change[good_tokens] > 0).all() and (change[bad_tokens] < 0).all()
    seq = step(adv)  # sequence credit: the answer costs less than "[]", so all its tokens go up
    assert (seq[good_tokens] > 0).all() and (seq[bad_tokens] > 0).all()


def tokenizer_with(*words):
    from transformers import AddedToken

    tok = build_tiny_processor().tokenizer
    tok.add_tokens([AddedToken(w, normalized=False, special=False) for w in words])
    return tok


def test_a_token_that_ends_in_white_space_belongs_to_what_it_closes():
    """Qwen merges a closing bracket with the line break after it ("}\\n", "]\\n"): such a token
    decides what its bracket decides (the box it ends, the list it closes)."""
    tok = tokenizer_with("[\n", "}\n", "]\n", ",\n")
    text = f"[\n{GOOD},\n{BAD}\n]\n"
    ids, mask = encode(tok, [text])
    s = ScoringSettings()
    scored = s.score([text], [GT])
    adv, located = token_advantages(scored, [text], torch.tensor([0.25]), ids, mask, tok)
    pieces = [tok.decode([t]) for t in ids[0].tolist()]
    value = dict(zip(pieces, adv[0].tolist()))
    delta = marginal_contributions(scored[0].dense)
    assert located == 1.0
    assert value["[\n"] == pytest.approx(0.25)  # opens the list: the answer's advantage
    assert value["}\n"] == pytest.approx(-delta[1])  # ends the bad box
    assert value["]\n"] == pytest.approx(0.25)  # closes the list: the answer's advantage


def test_the_token_that_opens_the_first_box_carries_the_answers_advantage():
    """Qwen writes a box's brace with the quote after it ('{"'): the first one is the decision
    to answer with boxes at all (the answer's advantage), the next ones open their box."""
    tok = tokenizer_with('{"', ' {"', '"},', '"}')
    text = f"[{GOOD}, {BAD}]"
    ids, mask = encode(tok, [text])
    scored = ScoringSettings().score([text], [GT])
    adv, _ = token_advantages(scored, [text], torch.tensor([0.25]), ids, mask, tok)
    pieces = [tok.decode([t]) for t in ids[0].tolist()]
    assert pieces[:2] == ["[", '{"'] and ' {"' in pieces
    delta = marginal_contributions(scored[0].dense)
    values = adv[0].tolist()
    assert values[:2] == pytest.approx([0.25, 0.25])
    assert values[2] == pytest.approx(-delta[0])  # "bbox...: box 1
    assert values[pieces.index(' {"')] == pytest.approx(-delta[1])
    assert values[-1] == pytest.approx(0.25)
