import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import grounding_terms, parse_boxes, score_answers, to_qwen_answer

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
