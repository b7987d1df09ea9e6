#!/usr/bin/env bash
# One device call (H200, <= 10 min): a warm start with fp32 master weights (constant LR after
# warm-up, snapshots along the way), then from each snapshot SFT at two branch LRs (and the
# hybrid from one of them) for the branch budget, validation only: from which point does SFT
# still gain >= 10 F1 points within the budget? Results and two snapshots' parts in $OUT.
#   usage (from the repo root on the device, .whl and .bnb carried): bash benchmarks/device/learning_explore.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PWD/.bnb HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=/tmp/w; mkdir -p $W/warm
BENCH="python3 -m trl_ground.benchmarks.learning"
SNAPS=${SNAPS:-"800 1200 1600 2000"}
WARM_S=${WARM_S:-250}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# 1. the warm start (fp32 masters, constant LR 5e-4 after 300 warm-up steps)
timeout $((WARM_S + 150)) $BENCH --work-dir $W/warm --out $OUT/warm.json --set 'branches=[]' --set seeds=[] --set timing_steps=0 \
  --set warm_lr=5e-4 --set warm_lr_scheduler=constant_with_warmup --set warm_steps=4000 --set warm_seconds=$WARM_S \
  --set warm_eval_every=200 --set "warm_snapshots=[${SNAPS// /,}]" 2>&1 | grep -E "ready|step [0-9]+:|Error|error" | grep -v Warning
ls $W/warm
# 2. from each snapshot: SFT at two LRs (and the hybrid from the second), 200 steps at batch 64, validation only
BRANCH="--set branch_batch=64 --set branch_steps=200 --set eval_every=50 --set branch_seconds=${BRANCH_S:-150} --set timing_steps=0 --set seeds=[]"
i=0
for step in $SNAPS; do
  [ -d $W/warm/warm_step_$step ] || continue
  mkdir -p $W/from_$step && ln -sfn $W/warm/data $W/from_$step/data
  if [ $i -eq 1 ]; then
    TUNE='{"sft": [["--lr", "2e-4"], ["--lr", "6e-4"]], "hybrid": [["--lr", "6e-4"]]}'; BR='["sft", "hybrid"]'; JOBS=3
  else
    TUNE='{"sft": [["--lr", "2e-4"], ["--lr", "6e-4"]]}'; BR='["sft"]'; JOBS=2
  fi
  $BENCH --work-dir $W/from_$step --out $W/from_$step.json --warm-from $W/warm/warm_step_$step $BRANCH \
    --set "branches=$BR" --set "tune=$TUNE" --set jobs=$JOBS > $W/from_$step.log 2>&1 &
  i=$((i + 1))
done
wait
python3 - "$W" "$OUT" <<'PY'
import json, sys, pathlib
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {}
for f in sorted(w.glob("from_*.json")):
    r = json.loads(f.read_text())
    start = r["warm_start"]["curve"][-1]["val_f1"]
    rows[f.stem] = {"start_val_f1": start, "tuning": r.get("tuning"), "failed": r.get("failed")}
    for name, t in (r.get("tuning") or {}).items():
        print(f.stem, name, "start", start, "->", t["final_val_f1"], [c[-1]["train_s"] if c else None for c in t["curves"]])
(out / "explore.json").write_text(json.dumps(rows, indent=1))
PY
for f in $W/from_*.log; do grep -E "failed|Traceback|Error" $f | head -3; done
python3 - "$W" "$OUT" <<'PY'
import sys, pathlib
from trl_ground.benchmarks.warm_start import export_warm
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
snaps = sorted(w.glob("warm/warm_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
for snap in snaps[1:3]:  # the middle two: the likeliest branching points
    tmp = w / f"export_{snap.name}"
    (tmp / "warm_model").parent.mkdir(parents=True, exist_ok=True)
    (tmp / "warm_model").symlink_to(snap)
    print(export_warm(tmp, out / snap.name))
PY
