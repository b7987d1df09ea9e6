import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rewards.matching as matching
from rewards import greedy_match, hungarian_match, iou_matrix, match_iou


def brute_force_best(iou, thr):
    """(pairs, total IoU) of the best assignment by enumeration: most pairs, then total."""
    n, m = iou.shape
    best = (0, 0.0)
    for k in range(min(n, m), 0, -1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                vals = iou[list(rows), list(cols)]
                if (vals >= thr).all():
                    best = max(best, (k, float(vals.sum())))
        if best[0]:
            return best
    return best


def test_hungarian_beats_greedy_on_a_crafted_case():
    # pred 0 overlaps gt 0 best (IoU 0.9) and gt 1 (0.6); pred 1 overlaps only gt 0 (0.6).
    # Greedy takes (0, 0) and leaves pred 1 unmatched; Hungarian finds (0, 1) and (1, 0).
    iou = np.array([[0.9, 0.6], [0.6, 0.0]])
    assert len(match_iou(iou, 0.5, "greedy")[0]) == 1
    p, g = match_iou(iou, 0.5, "hungarian")
    assert list(zip(p, g)) == [(0, 1), (1, 0)]


def test_greedy_is_highest_first():
    iou = np.array([[0.7, 0.8], [0.75, 0.1]])
    p, g = match_iou(iou, 0.5, "greedy")
    # 0.8 first -> (0, 1); then 0.75 -> (1, 0)
    assert list(zip(p, g)) == [(0, 1), (1, 0)]


def test_threshold_is_inclusive_and_empty_inputs():
    a = np.array([[0.0, 0.0, 0.5, 1.0]])
    b = np.array([[0.0, 0.0, 1.0, 1.0]])  # IoU exactly 0.5
    assert len(hungarian_match(a, b, 0.5)[0]) == 1
    assert len(greedy_match(a, b, 0.5)[0]) == 1
    p, g = hungarian_match(np.zeros((0, 4)), b)
    assert p.dtype == np.int64 and len(p) == len(g) == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        hungarian_match([[0, 0, 1, 1]], [[0, 0, 1, 1]], iou_threshold=1.5)
    with pytest.raises(ValueError):
        match_iou(np.ones((1, 1)), 0.5, "auction")


def test_fallback_without_scipy_warns_once(monkeypatch):
    monkeypatch.setattr(matching, "linear_sum_assignment", None)
    monkeypatch.setattr(matching, "_warned_fallback", False)
    iou = np.array([[0.9, 0.6], [0.6, 0.0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = match_iou(iou, 0.5, "hungarian")
        match_iou(iou, 0.5, "hungarian")
    assert len([w for w in caught if "falls back to greedy" in str(w.message)]) == 1
    np.testing.assert_array_equal(first[0], match_iou(iou, 0.5, "greedy")[0])


def test_fallback_on_non_finite_matrix(monkeypatch):
    monkeypatch.setattr(matching, "_warned_fallback", False)
    iou = np.array([[np.nan, 0.9], [0.8, 0.1]])
    with pytest.warns(RuntimeWarning, match="not finite"):
        p, g = match_iou(iou, 0.5, "hungarian")
    assert list(zip(p, g)) == [(0, 1), (1, 0)]


coord = st.floats(0, 1, allow_nan=False)


@st.composite
def box_set(draw, max_n=5):
    n = draw(st.integers(0, max_n))
    out = []
    for _ in range(n):
        x1, x2 = sorted([draw(coord), draw(coord)])
        y1, y2 = sorted([draw(coord), draw(coord)])
        out.append([x1, y1, x2 + 0.05, y2 + 0.05])
    return np.array(out).reshape(-1, 4)


@settings(max_examples=300, deadline=None)
@given(box_set(), box_set(), st.sampled_from([0.1, 0.3, 0.5, 0.75]))
def test_matcher_invariants_and_hungarian_optimality(pred, gt, thr):
    iou = iou_matrix(pred, gt)
    results = {}
    for name, fn in (("hungarian", hungarian_match), ("greedy", greedy_match)):
        p, g = fn(pred, gt, thr)
        assert len(set(p.tolist())) == len(p) and len(set(g.tolist())) == len(g)  # one-to-one
        assert (iou[p, g] >= thr).all()
        results[name] = (len(p), float(iou[p, g].sum()))
    assert results["hungarian"][0] >= results["greedy"][0]
    best = brute_force_best(iou, thr)
    assert results["hungarian"][0] == best[0]
    assert results["hungarian"][1] == pytest.approx(best[1], abs=1e-9)
