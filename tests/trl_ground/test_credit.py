"""Box-level credit: which advantage each token carries, and what the gradient then does."""

import numpy as np
import pytest
import torch

from rewards import ScoringSettings
from rewards.layout import answer_layout
from trl_ground.credit import GroupBaselines, box_baselines, segment_costs, token_advantages
from trl_ground.policy_gradient import advantages, policy_surrogate
from trl_ground.tiny import build_tiny_processor

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


def test_segments_price_each_box_and_the_closing_decision():
    s = ScoringSettings()
    good_and_bad, closes_early = s.score([f"[{GOOD}, {BAD}]", f"[{GOOD}]"], [GT, GT])
    q_good, q_bad = good_and_bad.dense.box_quality
    assert q_good == 1.0 and q_bad < 0.2
    segs = segment_costs(good_and_bad, answer_layout(f"[{GOOD}, {BAD}]"), 0.3, baseline=0.5, missing_baseline=0.0)
    values = [v for _, v in segs]
    assert values == [0.3, pytest.approx(0.5 - q_good), pytest.approx(0.5 - q_bad), 0.3, 0.3]  # [, good, bad, ], rest
    # closing while 1 of the 2 ground-truth boxes has no box, where the group typically leaves
    # a quarter without one: pushed down by the difference, on top of the answer's advantage
    early = [v for _, v in segment_costs(closes_early, answer_layout(f"[{GOOD}]"), -0.4, 0.5, missing_baseline=0.25)]
    assert early[2] == pytest.approx(-0.4 + 0.5 - 0.25)
    # when the whole group closes that early, closing is not singled out
    assert segment_costs(closes_early, answer_layout(f"[{GOOD}]"), -0.4, 0.5, missing_baseline=0.5)[2][1] == pytest.approx(-0.4)
    negative = s.score([f"[{GOOD}]"], [[]])[0]
    assert [v for _, v in segment_costs(negative, answer_layout(f"[{GOOD}]"), 0.2, 0.0, 0.0)][1] == 1.0  # a box where there is none
    garbage = s.score(["the ship is at the top"], [GT])[0]
    assert segment_costs(garbage, answer_layout("the ship is at the top"), 0.7, 0.5, 0.0) == [(1 << 62, 0.7)]


def test_box_baselines_use_the_group_or_the_running_mean():
    s = ScoringSettings()
    scored = s.score([f"[{GOOD}]", f"[{BAD}]", "[]", f"[{GOOD}, {GOOD}]"], [GT] * 4)
    b, missing = box_baselines(scored, 2, None)
    assert b[0] == b[1] == pytest.approx((1.0 + scored[1].dense.box_quality[0]) / 2)
    assert b[2] == b[3] == pytest.approx(0.5)  # the duplicate counts with quality 0
    # missing: [GOOD] and [BAD] each leave 1 of the 2 boxes unmatched (the bad box is matched,
    # poorly); [] leaves 2 of 2, the duplicates 1 of 2
    assert missing[0] == missing[1] == pytest.approx(0.5) and missing[2] == missing[3] == pytest.approx(0.75)
    single = box_baselines(scored, 1, 0.25)
    assert (single.box_quality == 0.25).all()
    assert list(single.missing) == pytest.approx([0.5, 0.5, 1.0, 0.5])  # K = 1: the answer's own (the closing carries A_i)


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
    token_adv, located = token_advantages(scored, texts, adv, box_baselines(scored, 2, None), ids, mask, tokenizer)
    assert located == 1.0
    layout = answer_layout(texts[0])
    ends = np.cumsum([len(tokenizer.decode([t])) for t in ids[0][mask[0] == 1].tolist()])
    good_tokens = torch.tensor((ends > layout.open_end) & (ends <= layout.objects[0][1]))
    bad_tokens = torch.tensor((ends > layout.objects[0][1]) & (ends <= layout.objects[1][1]))

    def step(advantage):
        logits = torch.zeros(*ids.shape, len(tokenizer), requires_grad=True)
        logp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        policy_surrogate(advantage, logp, mask).backward()
        with torch.no_grad():
            new = torch.log_softmax(logits - 10.0 * logits.grad, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        return (new - logp.detach())[0]

    change = step(token_adv)
    assert (change[good_tokens] > 0).all() and (change[bad_tokens] < 0).all()
    seq = step(adv)  # sequence credit: the answer costs less than "[]", so all its tokens go up
    assert (seq[good_tokens] > 0).all() and (seq[bad_tokens] > 0).all()


def test_a_token_that_ends_in_white_space_belongs_to_what_it_closes():
    """Qwen merges a closing bracket with the line break after it ("}\\n", "]\\n"): such a token
    decides what its bracket decides (the box it ends, the list it closes)."""
    from transformers import AddedToken

    from trl_ground.tiny import build_tiny_processor

    tok = build_tiny_processor().tokenizer
    tok.add_tokens([AddedToken(w, normalized=False, special=False) for w in ("[\n", "}\n", "]\n", ",\n")])
    text = f"[\n{GOOD},\n{BAD}\n]\n"
    ids, mask = encode(tok, [text])
    s = ScoringSettings()
    scored = s.score([text], [GT])
    baselines = GroupBaselines(box_quality=np.array([0.5]), missing=np.array([0.0]))
    adv, located = token_advantages(scored, [text], torch.tensor([0.25]), baselines, ids, mask, tok)
    pieces = [tok.decode([t]) for t in ids[0].tolist()]
    value = dict(zip(pieces, adv[0].tolist()))
    q_good, q_bad = scored[0].dense.box_quality
    assert located == 1.0
    assert value["[\n"] == pytest.approx(0.25)  # opens the list: the answer's advantage
    assert value["}\n"] == pytest.approx(0.5 - q_bad)  # ends the bad box
    assert value["]\n"] == pytest.approx(0.25 + scored[0].dense.n_missing / 2)  # closes the list (its group covers all)
