#!/usr/bin/env bash
# One device call (H200, <= 10 min) for the step benchmark, on a freshly started machine:
# the GPU test tier (unless SKIP_GPU_TESTS is set), then `trl-ground-bench-step` three times: QLoRA (NF4 + LoRA r16),
# 16-bit LoRA (bf16 base) and the crowded case (30-box answers, QLoRA). Results in $OUT,
# named after $TAG; `trl-ground-bench-step --combine` then writes the committed file.
#   usage (from the repo root on the device, .whl/.bnb/.assets carried): TAG=run1 bash benchmarks/device/step.sh
# RUNS picks the runs (default "qlora lora16 crowded"); with every lever they do not fit one
# call: run qlora and the others in separate calls (RUNS=qlora, then RUNS="lora16 crowded",
# right after each other on the same machine).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PWD/.bnb HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
TAG=${TAG:-run}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -z "${SKIP_GPU_TESTS:-}" ]; then
  timeout ${GPU_TESTS_S:-200} python3 -m pytest -q -m gpu tests/gpu -p no:cacheprovider 2>&1 | tail -25 > "$OUT/gpu_tests_$TAG.txt"
  tail -3 "$OUT/gpu_tests_$TAG.txt"
fi
BENCH="python3 -m trl_ground.benchmarks.step --assets .assets --reps 3 --warmup 1"
fresh_tmp() { rm -rf /tmp/bench && mkdir -p /tmp/bench; }  # each run leaves a 17 GB checkpoint if killed
export TMPDIR=/tmp/bench
show() { grep -E "^(sft|hybrid)|Error|error:|Traceback|recompil" | grep -v Warning; }
RUNS=${RUNS:-qlora lora16 crowded}
for run in $RUNS; do
  fresh_tmp
  case $run in
    qlora) timeout ${QLORA_S:-420} $BENCH --out "$OUT/step_qlora_$TAG.json" 2>&1 | show ;;
    lora16) timeout ${LORA16_S:-260} $BENCH --lora16 --levers eager merged_packed merged_packed_compiled speculative --skip-generate \
      --out "$OUT/step_lora16_$TAG.json" 2>&1 | show ;;
    crowded) timeout ${CROWDED_S:-300} $BENCH --answer-boxes 30 --reps 1 --warmup 1 --levers eager merged merged_packed_compiled --skip-decode \
      --out "$OUT/step_crowded_$TAG.json" 2>&1 | show ;;
  esac
done
python3 - "$OUT" "$TAG" <<'PY'
import json, sys, pathlib
for kind in ("qlora", "lora16", "crowded"):
    p = pathlib.Path(sys.argv[1], f"step_{kind}_{sys.argv[2]}.json")
    if p.exists():
        r = json.loads(p.read_text())
        keep = {k: v for k, v in r.items() if k.endswith(("_s", "_gb", "_per_token", "seconds", "_ms", "_per_step"))
                or k in ("ratios", "decode_floor_ms_per_token", "errors", "compile_failed")}
        print(kind, json.dumps(keep))
PY
