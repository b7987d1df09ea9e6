"""Paired comparisons of two branches of the learning benchmark: the difference of a
micro-averaged metric, with a bootstrap interval over test queries x seeds.

Each run evaluates the same test queries (:func:`trl_ground.inference.evaluate.evaluate` with
``per_query=True``) and each seed gives both branches the same data order, so the branches
are compared query by query and seed by seed. One bootstrap resample draws ``S`` seeds and
``Q`` queries with replacement and recomputes both branches' metrics on the same draw; the
interval is the 2.5 / 97.5 percentile of their difference. Drawing seeds as well as queries
puts the seed-to-seed noise of training into the interval, not only the test set's.

The metrics are sums over queries (micro averages), as the evaluation computes them:

- ``f1``: ``2 TP / (2 TP + FP + FN)`` over all queries (the test mix: each scene asked its
  primary class and one absent class);
- ``f1_train_mix``: the same with the false positives of queries without boxes weighted by
  ``negative_weight``, the ratio of queries without boxes to queries with boxes in training
  over that ratio in the test set (the F1 at the training data's mix of prompts);
- ``f1_positive``: over the queries with boxes only;
- ``empty_fraction_positive``: answers without a box, over the queries with boxes;
- ``hallucination_fraction_negative``: answers with a box, over the queries without.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "metrics_from_counts", "paired_bootstrap", "stack_counts"]

METRICS = ("f1", "f1_train_mix", "f1_positive", "empty_fraction_positive", "hallucination_fraction_negative")
_COUNTS = ("tp", "fp", "fn", "n_pred", "positive")


def stack_counts(runs: list[dict]) -> dict[str, np.ndarray]:
    """The per-query counts of ``runs`` (rows holding ``per_query``) as ``(S, Q)`` arrays.

    Raises:
        ValueError when the runs did not evaluate the same queries in the same order.
    """
    keys = runs[0]["per_query"]["key"]
    for run in runs[1:]:
        if run["per_query"]["key"] != keys:
            raise ValueError("the runs evaluated different test queries: they cannot be paired")
    return {name: np.array([run["per_query"][name] for run in runs], dtype=np.float64) for name in _COUNTS}


def metrics_from_counts(c: dict[str, np.ndarray], seed_weights: np.ndarray, query_weights: np.ndarray,
                        negative_weight: float) -> dict[str, np.ndarray]:
    """Each metric of :data:`METRICS` for ``B`` weightings of the ``(S, Q)`` counts ``c``.

    Args:
        c: ``(S, Q)`` arrays ``tp``, ``fp``, ``fn``, ``n_pred`` and ``positive`` (0 / 1).
        seed_weights: ``(B, S)`` how often each seed is drawn.
        query_weights: ``(B, Q)`` how often each query is drawn.
        negative_weight: weight of the false positives on queries without boxes in ``f1_train_mix``.
    Returns:
        ``{metric: (B,)}``; a fraction over no query is NaN.
    """

    def total(x):
        return np.einsum("bs,sq,bq->b", seed_weights, x, query_weights)

    positive = c["positive"]
    negative = 1.0 - positive
    tp, fn = total(c["tp"]), total(c["fn"])
    fp_pos, fp_neg = total(c["fp"] * positive), total(c["fp"] * negative)
    n_pos, n_neg = total(positive), total(negative)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "f1": _f1(tp, fp_pos + fp_neg, fn),
            "f1_train_mix": _f1(tp, fp_pos + negative_weight * fp_neg, fn),
            "f1_positive": _f1(tp, fp_pos, fn),
            "empty_fraction_positive": total(positive * (c["n_pred"] == 0)) / n_pos,
            "hallucination_fraction_negative": total(negative * (c["n_pred"] > 0)) / n_neg,
        }


def _f1(tp, fp, fn):
    """``2 TP / (2 TP + FP + FN)``; 1 where there is nothing to find and nothing was found."""
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 1.0)


def paired_bootstrap(base_runs: list[dict], runs: list[dict], negative_weight: float, resamples: int = 2000,
                     seed: int = 0) -> dict:
    """``runs`` against ``base_runs`` (e.g. a branch against SFT), paired by seed and query.

    Args:
        base_runs, runs: rows with ``seed`` and ``per_query``; only seeds in both are used.
        negative_weight: see :func:`metrics_from_counts`.
        resamples: bootstrap draws.
        seed: of the draws (the same draws for every metric).
    Returns:
        ``{"seeds": [...], "queries": Q, metric: {"base", "value", "difference", "low", "high"}}``:
        the metrics on all seeds and queries, ``value - base``, and its 95 % interval.
    """
    by_seed = {r["seed"]: r for r in base_runs}
    pairs = [(by_seed[r["seed"]], r) for r in sorted(runs, key=lambda r: r["seed"]) if r["seed"] in by_seed]
    if not pairs:
        raise ValueError("no seed in common: nothing to pair")
    base = stack_counts([b for b, _ in pairs])
    other = stack_counts([r for _, r in pairs])
    if not np.array_equal(base["positive"], other["positive"]):
        raise ValueError("the two branches evaluated different test queries: they cannot be paired")
    s, q = base["tp"].shape
    rng = np.random.default_rng(seed)
    seed_w = np.stack([np.bincount(rng.integers(s, size=s), minlength=s) for _ in range(resamples)]).astype(np.float64)
    query_w = np.stack([np.bincount(rng.integers(q, size=q), minlength=q) for _ in range(resamples)]).astype(np.float64)
    ones_s, ones_q = np.ones((1, s)), np.ones((1, q))
    full_base = metrics_from_counts(base, ones_s, ones_q, negative_weight)
    full_other = metrics_from_counts(other, ones_s, ones_q, negative_weight)
    draws_base = metrics_from_counts(base, seed_w, query_w, negative_weight)
    draws_other = metrics_from_counts(other, seed_w, query_w, negative_weight)
    out = {"seeds": [r["seed"] for _, r in pairs], "queries": q}
    for name in METRICS:
        diff = draws_other[name] - draws_base[name]
        diff = diff[np.isfinite(diff)]
        low, high = (np.percentile(diff, [2.5, 97.5]) if diff.size else (np.nan, np.nan))
        out[name] = {
            "base": _round(full_base[name][0]),
            "value": _round(full_other[name][0]),
            "difference": _round(full_other[name][0] - full_base[name][0]),
            "low": _round(low),
            "high": _round(high),
        }
    return out


def _round(x) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)
