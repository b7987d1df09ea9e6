#!/usr/bin/env bash
# One device call (H200, <= 10 min): the GPU test tier, then the learning benchmark's
# branches from the committed warm start: each tuned branch's candidates on validation
# (tune_seed), then every seed of every branch with the chosen settings. Results in $OUT.
#   usage (from the repo root on the device, .whl and .bnb carried):
#   TAG=run1 bash benchmarks/device/learning_branches.sh
# Settings (environment): TUNE (JSON, the tune setting), BRANCHES, SEEDS, STEPS, BATCH, LR,
# K, NEW_TOKENS, EVAL_EVERY, JOBS (at most 10 on one H200: 15 ran out of its memory), BRANCH_S (the
# per-run time guard, seconds), SKIP_GPU_TESTS.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PWD/.bnb HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
TAG=${TAG:-run}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ -z "${SKIP_GPU_TESTS:-}" ]; then
  CUDA_LAUNCH_BLOCKING=1 timeout ${TESTS_S:-120} python3 -m pytest -q -m gpu tests/gpu -p no:cacheprovider 2>&1 | tail -40 > "$OUT/gpu_tests_$TAG.txt"
  tail -3 "$OUT/gpu_tests_$TAG.txt"
fi
TUNE=${TUNE:-'{}'}
EXTRA='[]'
if [ -f "$OUT/gpu_tests_$TAG.txt" ] && grep -q "FAILED.*fp32_masters" "$OUT/gpu_tests_$TAG.txt"; then
  echo "the static sampler failed under autocast on this GPU: branches sample with generate"; EXTRA='["--sampler", "generate"]'
fi
timeout ${TIMEOUT:-430} python3 -m trl_ground.benchmarks.learning --work-dir /tmp/w --out "$OUT/learning_$TAG.json" \
  --warm-from benchmarks/warm_start --set "branches=${BRANCHES:-[\"sft\", \"hybrid\", \"shuffled\", \"literal\"]}" \
  --set "seeds=${SEEDS:-[0, 1, 2, 3, 4]}" --set "tune=$TUNE" --set branch_steps=${STEPS:-200} --set branch_batch=${BATCH:-64} \
  --set branch_lr=${LR:-5e-5} --set num_generations=${K:-4} --set max_completion_length=${NEW_TOKENS:-96} \
  --set eval_every=${EVAL_EVERY:-50} --set branch_seconds=${BRANCH_S:-200} --set jobs=${JOBS:-10} --set timing_steps=0 \
  --set "extra_flags=$EXTRA" 2>&1 | grep -E "ready|tuning|branch .* seed|failed|Traceback|Error" | grep -v Warning
tar -czf "$OUT/logs_$TAG.tgz" -C /tmp/w logs 2>/dev/null
python3 - "$OUT/learning_$TAG.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("warm start test F1", r.get("warm_start", {}).get("metrics", {}).get("f1"))
print("goal:", json.dumps(r.get("summary", {}).get("goal")))
for name, row in (r.get("summary") or {}).get("branches", {}).items():
    print(name, row["seeds"], "f1", row["f1"], "empty", row["empty_fraction_positive"]["mean"], "halluc", row["hallucination_fraction_negative"]["mean"])
PY
