"""Benchmark rewards/: parse + match + score N completions of ~10 boxes each.

    trl-ground-bench-rewards [--n 10000] [--boxes 10] [--method hungarian] [--json OUT]

Prints completions/s and the total seconds through ``score_answers`` (batches of 64, the
path the trainer and the GRPO rewards use), and for comparison ``parse_boxes`` +
``grounding_terms`` one completion at a time (target: 10,000 completions under 0.5 s on one
core). Completions are Qwen3-VL JSON answers: jittered copies of the ground truth, with a
missing box and an invented one now and then, so matching does real work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from trl_ground.benchmarks import benchmark_command

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from rewards import ScoringSettings, grounding_terms, parse_boxes, score_answers, to_qwen_answer  # noqa: E402

COUNTS = ScoringSettings(cost="counts")


def make_cases(n: int, n_boxes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        k = max(1, int(rng.integers(n_boxes - 2, n_boxes + 3)))
        xy = rng.uniform(0, 0.8, size=(k, 2))
        wh = rng.uniform(0.05, 0.2, size=(k, 2))
        gt = np.concatenate([xy, np.minimum(xy + wh, 1.0)], axis=1)
        pred = np.clip(gt + rng.normal(0, 0.01, size=gt.shape), 0, 1)
        if rng.random() < 0.3:
            pred = pred[1:]
        if rng.random() < 0.3:
            pred = np.concatenate([pred, rng.uniform(0, 1, size=(1, 4))])
        cases.append((to_qwen_answer(pred, "ship"), gt))
    return cases


def run_batched(cases, method: str, batch: int) -> float:
    """The path the trainer and GRPO rewards use: score_answers over batches."""
    start = time.perf_counter()
    for i in range(0, len(cases), batch):
        chunk = cases[i : i + batch]
        for s in score_answers([t for t, _ in chunk], [g for _, g in chunk], method=method):
            COUNTS.counts_cost(s.terms)
    return time.perf_counter() - start


def run_one_by_one(cases, method: str) -> float:
    """parse_boxes + grounding_terms per completion (the simple single-answer API)."""
    start = time.perf_counter()
    for text, gt in cases:
        parsed = parse_boxes(text)
        COUNTS.counts_cost(grounding_terms(parsed.boxes, gt, method=method))
    return time.perf_counter() - start


def run(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--boxes", type=int, default=10)
    ap.add_argument("--method", default="hungarian", choices=["hungarian", "greedy"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="answers per score_answers call")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)
    cases = make_cases(args.n, args.boxes)
    batched = sorted(run_batched(cases, args.method, args.batch) for _ in range(args.repeats))
    single = sorted(run_one_by_one(cases, args.method) for _ in range(args.repeats))
    result = {
        "completions": args.n,
        "mean_boxes": float(np.mean([len(gt) for _, gt in cases])),
        "method": args.method,
        "batch": args.batch,
        "seconds_median": round(batched[len(batched) // 2], 4),
        "seconds_best": round(batched[0], 4),
        "completions_per_s": round(args.n / batched[len(batched) // 2]),
        "one_by_one_seconds_median": round(single[len(single) // 2], 4),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


main = benchmark_command(run)


if __name__ == "__main__":
    sys.exit(main())
