import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import ScoringSettings, grounding_terms, parse_boxes, score_answers, to_qwen_answer
from rewards.grpo import REWARDS, get_reward
from rewards.parsing import MAX_BOXES
from rewards.scoring import GT_TOLERANCE

coord = st.floats(0, 1, allow_nan=False)


@st.composite
def boxes(draw, max_n=6):
    n = draw(st.integers(0, max_n))
    out = []
    for _ in range(n):
        x1, x2 = sorted([draw(coord), draw(coord)])
        y1, y2 = sorted([draw(coord), draw(coord)])
        out.append([x1, y1, min(x2 + 0.1, 1), min(y2 + 0.1, 1)])
    return np.array(out).reshape(-1, 4)


@st.composite
def answer(draw):
    kind = draw(st.sampled_from(["qwen", "garbage", "truncated", "nonfinite"]))
    b = draw(boxes())
    labels = draw(st.lists(st.sampled_from(["ship", "car"]), min_size=len(b), max_size=len(b)))
    if kind == "garbage":
        return draw(st.text(max_size=30))
    items = ['{"bbox_2d": [%s], "label": "%s"}' % (", ".join(str(round(v * 1000)) for v in box), lab) for box, lab in zip(b, labels)]
    if kind == "nonfinite":
        items.append('{"bbox_2d": [NaN, 1, 2, 3]}')
    text = "[" + ", ".join(items) + "]"
    return text[:-3] if kind == "truncated" else text


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(answer(), boxes()), min_size=1, max_size=8),
    st.sampled_from([0.0, 0.3, 0.5]),
    st.sampled_from(["hungarian", "greedy"]),
    st.booleans(),
)
def test_batch_scoring_equals_one_at_a_time(cases, thr, method, label_aware):
    texts, gts = [c[0] for c in cases], [c[1] for c in cases]
    queries = ["ship"] * len(cases) if label_aware else None
    scored = score_answers(texts, gts, iou_threshold=thr, method=method, query_labels=queries)
    for text, gt, s in zip(texts, gts, scored):
        parsed = parse_boxes(text)
        np.testing.assert_array_equal(s.parsed.boxes, parsed.boxes)
        assert s.parsed.labels == parsed.labels
        assert (s.parsed.valid_json, s.parsed.truncated) == (parsed.valid_json, parsed.truncated)
        ref = grounding_terms(parsed.boxes, gt, thr, method, parsed.labels, "ship" if label_aware else None)
        for field, value in ref.as_dict().items():
            assert getattr(s.terms, field) == pytest.approx(value, abs=1e-12), field


def test_score_answers_checks_arguments():
    with pytest.raises(ValueError):
        score_answers(["[]"], [])
    with pytest.raises(ValueError):
        score_answers(["[]"], [[]], method="x")


def test_conflicting_case_goes_through_the_assignment():
    # two predictions both overlap both gt boxes >= 0.5 (conflict) -> Hungarian picks the best pairing
    gt = np.array([[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5]])
    pred = np.array([[0.05, 0.0, 0.55, 0.5], [0.0, 0.0, 0.5, 0.5]])
    (s,) = score_answers([to_qwen_answer(pred, "ship")], [gt])
    assert s.terms.n_matched == 2 and s.terms.mean_iou == pytest.approx(1.0)


# --- input checks (issue 17): lengths, ground-truth space ---

GT = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]]
ANSWER = '[{"bbox_2d": [100, 100, 300, 300], "label": "ship"}]'


def test_mismatched_lengths_name_both():
    with pytest.raises(ValueError, match="3 answers but 2 ground truths"):
        score_answers([ANSWER] * 3, [GT, GT])
    with pytest.raises(ValueError, match="2 answers but 1 query labels"):
        score_answers([ANSWER] * 2, [GT, GT], query_labels=["ship"])
    for kind in [k for k in REWARDS if REWARDS[k].value is not None]:  # every reward that reads gt_boxes ("format" does not)
        reward = get_reward(kind)
        with pytest.raises(ValueError, match="3 completions but 2 gt_boxes"):
            reward([ANSWER] * 3, gt_boxes=[GT, GT])  # used to give None for the third
        with pytest.raises(ValueError, match="1 completions but 2 gt_boxes"):
            reward([ANSWER], gt_boxes=[GT, GT])  # used to raise IndexError
    with pytest.raises(ValueError, match="2 completions but 1 values of 'class'"):
        get_reward("f1", ScoringSettings(label_aware_matching=True))([ANSWER] * 2, gt_boxes=[GT, GT], **{"class": ["ship"]})


def test_ground_truth_in_qwen_space_is_rejected_with_its_cause():
    qwen = (np.array(GT) * 1000).tolist()
    message = r"looks like 0\.\.1000 Qwen coordinates; gt_boxes must be normalized to \[0, 1\]"
    with pytest.raises(ValueError, match=r"gt_boxes\[1\] = .*" + message):
        score_answers([ANSWER] * 2, [GT, qwen])
    with pytest.raises(ValueError, match=message):
        get_reward("grounding")([ANSWER], gt_boxes=[qwen])  # used to score -2.5
    with pytest.raises(ValueError, match="looks like pixel coordinates"):
        score_answers([ANSWER], [[[10, 20, 1920, 1080]]])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        score_answers([ANSWER], [[[-0.5, 0.1, 0.3, 0.3]]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_ground_truth_is_rejected(bad):
    with pytest.raises(ValueError, match=r"gt_boxes\[0\] holds a non-finite coordinate"):
        score_answers([ANSWER], [[[0.1, bad, 0.3, 0.3]]])
    with pytest.raises(ValueError, match="non-finite"):
        get_reward("iou")([ANSWER, ANSWER], gt_boxes=[GT, [[0.1, bad, 0.3, 0.3]]])


def test_ground_truth_tolerance_matches_the_data_loader():
    from trl_ground.data.records import BOX_TOLERANCE

    assert GT_TOLERANCE == BOX_TOLERANCE
    inside = [[-0.005, 0.1, 0.3, 1.005]]
    (s,) = score_answers(['[{"bbox_2d": [0, 100, 300, 1000]}]'], [inside])
    assert s.terms.n_matched == 1
    for outside in ([[-0.02, 0.1, 0.3, 0.3]], [[0.1, 0.1, 0.3, 1.02]]):
        with pytest.raises(ValueError):
            score_answers([ANSWER], [outside])


def test_bad_ground_truth_shape_names_its_index():
    with pytest.raises(ValueError, match=r"gt_boxes\[1\]: boxes must have shape \(N, 4\)"):
        score_answers([ANSWER] * 2, [GT, [[0.1, 0.2, 0.3]]])


def test_empty_and_none_ground_truths_still_score():
    assert [s.terms.fp for s in score_answers([ANSWER, "[]"], [[], None])] == [1.0, 0.0]
    assert get_reward("iou")([ANSWER, ANSWER], gt_boxes=[None, GT])[0] is None


DEGENERATE = [
    "[" * 100_000,
    '{"a":' * 20_000,
    '[{"bbox_2d":[' * 20_000,
    "<|object_ref_start|>" * 10_000,
    "[" + ", ".join(['{"bbox_2d": [100, 100, 300, 300], "label": "ship"}'] * (3 * MAX_BOXES)),
    "[1, 2, 3, 4]" * (3 * MAX_BOXES),
    "x" * 1_000_000,
]


def test_scoring_and_every_reward_survive_degenerate_answers():
    gts = [GT] * len(DEGENERATE)
    for s in score_answers(DEGENERATE, gts):
        assert len(s.parsed) <= MAX_BOXES and np.isfinite(ScoringSettings(cost="counts").answer_cost(s))
    for kind in REWARDS:
        for label_aware in (False, True):
            reward = get_reward(kind, ScoringSettings(label_aware_matching=label_aware))
            out = reward(DEGENERATE, gt_boxes=gts, **{"class": ["ship"] * len(DEGENERATE)})
            assert len(out) == len(DEGENERATE) and all(np.isfinite(v) for v in out)
