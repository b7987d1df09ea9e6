"""The paired bootstrap of the learning benchmark: metrics from per-query counts, intervals."""

import numpy as np
import pytest

from trl_ground.benchmarks.paired import metrics_from_counts, paired_bootstrap, stack_counts


def run(seed, tp, fp, fn, n_pred, positive):
    keys = [f"q{i}" for i in range(len(tp))]
    return {"seed": seed, "per_query": {"key": keys, "tp": tp, "fp": fp, "fn": fn, "n_pred": n_pred, "positive": positive}}


def test_metrics_from_counts_by_hand():
    # query 0: 2 boxes, 1 found + 1 wrong box; query 1: no boxes, 1 hallucinated; query 2: 1 box, answered []
    c = stack_counts([run(0, [1, 0, 0], [1, 1, 0], [1, 0, 1], [2, 1, 0], [True, False, True])])
    m = metrics_from_counts(c, np.ones((1, 1)), np.ones((1, 3)), negative_weight=0.5)
    assert m["f1"][0] == pytest.approx(2 / (2 + 2 + 2))
    assert m["f1_train_mix"][0] == pytest.approx(2 / (2 + 1 + 0.5 + 2))
    assert m["f1_positive"][0] == pytest.approx(2 / (2 + 1 + 2))
    assert m["empty_fraction_positive"][0] == pytest.approx(0.5)
    assert m["hallucination_fraction_negative"][0] == pytest.approx(1.0)
    # a query drawn twice counts twice
    twice = metrics_from_counts(c, np.ones((1, 1)), np.array([[0.0, 0.0, 2.0]]), negative_weight=1.0)
    assert twice["f1"][0] == 0.0 and twice["empty_fraction_positive"][0] == 1.0


def test_interval_excludes_zero_for_a_clear_gain_and_covers_it_for_noise():
    rng = np.random.default_rng(0)
    q = 200
    positive = [True] * 150 + [False] * 50

    def noisy(seed, p_found):
        found = (rng.random(q) < p_found) & np.array(positive)
        return run(seed, found.astype(int).tolist(), [0] * q, (~found & np.array(positive)).astype(int).tolist(),
                   found.astype(int).tolist(), positive)

    base = [noisy(s, 0.5) for s in range(5)]
    better = [noisy(s, 0.7) for s in range(5)]
    same = [noisy(s, 0.5) for s in range(5)]
    gain = paired_bootstrap(base, better, negative_weight=1.0, resamples=500)
    assert gain["seeds"] == [0, 1, 2, 3, 4] and gain["queries"] == q
    assert gain["f1"]["low"] > 0 and gain["f1"]["low"] < gain["f1"]["difference"] < gain["f1"]["high"]
    assert gain["empty_fraction_positive"]["high"] < 0
    noise = paired_bootstrap(base, same, negative_weight=1.0, resamples=500)
    assert noise["f1"]["low"] < 0 < noise["f1"]["high"]
    assert noise["hallucination_fraction_negative"]["difference"] == 0


def test_runs_are_paired_by_seed_and_must_share_queries():
    a = [run(0, [1], [0], [0], [1], [True]), run(1, [0], [0], [1], [0], [True])]
    b = [run(1, [1], [0], [0], [1], [True])]
    assert paired_bootstrap(a, b, 1.0, resamples=10)["seeds"] == [1]
    other = run(1, [1], [0], [0], [1], [True])
    other["per_query"]["key"] = ["elsewhere"]
    with pytest.raises(ValueError, match="different test queries"):
        stack_counts([a[1], other])
    with pytest.raises(ValueError, match="no seed in common"):
        paired_bootstrap(a, [run(7, [1], [0], [0], [1], [True])], 1.0)
