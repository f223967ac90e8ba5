#!/bin/bash
# Train ablation variants of the prior side by side on one GPU for a fixed wall-clock time,
# then score each on 8 validation patients (configs/ablation/README.md has the results).
#
#   bash scripts/gpu_ablation.sh ACDC_PP OUT SECONDS VARIANT [VARIANT...]
#
# ACDC_PP: `nimosef preprocess --layout acdc ... --holdout patient090` output. VARIANT: a name
# of configs/ablation/*.yaml. Each run checkpoints every 5 epochs; what the time limit leaves
# is the last checkpoint, and `nimosef train --resume` continues it exactly.
set -u
ROOT=$1; OUT=$2; T=$3; shift 3
mkdir -p "$OUT"
for v in "$@"; do
  OMP_NUM_THREADS=3 timeout "${T}s" python3 -m nimosef_engine train \
    --config "configs/ablation/$v.yaml" --root "$ROOT" --out "$OUT/$v" --progress none \
    > "$OUT/train_$v.log" 2>&1 &
done
wait
for v in "$@"; do
  OMP_NUM_THREADS=3 python3 -m nimosef_engine calibrate-fit --root "$ROOT" \
    --checkpoint "$OUT/$v/checkpoint.pt" --split val --max-subjects 8 \
    --steps 25 50 100 200 300 --progress none --drop-optimizer --out "$OUT/$v/calibrated.pt" \
    > "$OUT/calibrate_$v.json" 2> "$OUT/calibrate_$v.log" &
done
wait
for v in "$@"; do
  python3 - "$OUT/$v/calibrated.pt" "$OUT/calibrate_$v.json" "$v" "$T" "$#" <<'PY'
import json, sys, torch
from nimosef_engine.core.safe_load import load_torch_file
ck = load_torch_file(sys.argv[1], "checkpoint")
print(json.dumps({"variant": sys.argv[3], "epoch": ck["epoch"], "seconds": int(sys.argv[4]),
                  "runs_side_by_side": int(sys.argv[5]),
                  "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                  **json.load(open(sys.argv[2]))}))
PY
done | tee -a "$OUT/ablation.jsonl"
