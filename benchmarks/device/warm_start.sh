#!/usr/bin/env bash
# One device call (H200, <= 10 min): the learning benchmark's data, the speed probe of the
# warm-start step, then three warm-start variants trained at once (they share the GPU), and
# the best one by validation F1@0.5 exported (bf16, tar parts) to $OUT/warm_best.
#   usage (from the repo root on the device): bash benchmarks/device/warm_start.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/.bnb HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=/tmp/w; mkdir -p $W/base
BENCH="python3 -m trl_ground.benchmarks.learning"
GUARD=${GUARD:-380}                  # seconds of training per variant
$BENCH --work-dir $W/base --out $W/probe.json --speed-probe --stop-after probe 2>&1 | grep -v Warning | tail -4
cp $W/probe.json $OUT/probe.json
# planned steps from the probe's speed, assuming 3 processes slow each other by a third
STEPS=$(python3 -c "import json; p=json.load(open('$OUT/probe.json'))['speed_probe']; print(int(p['packed_vision_attention']['steps_per_second'] * 0.67 * $GUARD))")
echo "planned warm-start steps per variant: $STEPS"
declare -A VARIANTS=(
  [a_lr1e-3]="--set warm_lr=1e-3"
  [b_lr2e-3]="--set warm_lr=2e-3 --set warm_warmup_steps=500"
  [c_lr5e-4]="--set warm_lr=5e-4"
)
for name in "${!VARIANTS[@]}"; do
  mkdir -p $W/$name && ln -sfn $W/base/data $W/$name/data
  $BENCH --work-dir $W/$name --out $W/$name/warm.json --set branches=[] --set timing_steps=0 --set warm_workers=4 \
    --set warm_steps=$STEPS --set warm_seconds=$GUARD --set warm_eval_every=$((STEPS / 6)) ${VARIANTS[$name]} > $W/$name.log 2>&1 &
done
wait
for name in "${!VARIANTS[@]}"; do
  echo "== $name"; grep -E "val F1|non-finite|Error|error" $W/$name.log | tail -4
  cp $W/$name/warm.json $OUT/warm_$name.json || true
done
BEST=$(python3 -c "
import json, glob
rows = {f.split('warm_')[1][:-5]: json.load(open(f)).get('warm_start', {}) for f in glob.glob('$OUT/warm_*.json')}
print(max(rows, key=lambda n: (rows[n].get('curve') or [{'val_f1': -1}])[-1]['val_f1']))")
echo "best: $BEST"
python3 -c "
from pathlib import Path
from trl_ground.benchmarks.warm_start import export_warm
print(export_warm(Path('$W/$BEST'), Path('$OUT/warm_best')))"
