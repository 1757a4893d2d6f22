#!/usr/bin/env bash
# ECCV16 vs hypercolumn-Lab vs hypercolumn-hue/chroma at the same CPU budget (docs/hypercolumn.md).
# Step counts give each run the same ~750 CPU-seconds: measured single-thread costs per step of 16
# crops of 128 px on a 2-core Intel Xeon @ 2.00GHz: ECCV16 w0.25 1.25 s, hypercolumn Lab 0.97 s,
# hue/chroma 1.05 s. The three runs go in parallel, one thread each; re-running resumes from checkpoints.
#   bash scripts/hypercolumn_comparison.sh train      # the three runs (DATA=/tmp/hc_data RUNS=runs/hc by default)
#   bash scripts/hypercolumn_comparison.sh evaluate   # held-out evaluation of each, JSON beside each model
set -euo pipefail
DATA=${DATA:-/tmp/hc_data}
RUNS=${RUNS:-runs/hc}
SHARED=${SHARED:-../shared/data}
if [ ! -d "$DATA/imnet" ]; then  # ImageNet samples with every 10th held out; Imagenette and scenes all train
  hf-colorize pack "$SHARED/imagenet-samples" "$DATA/imnet" --max-side 320 --holdout-every 10
  hf-colorize pack "$SHARED/imagenette" "$DATA/imagenette" --max-side 0 --shard-size 1000
  hf-colorize pack "$SHARED/scenes" "$DATA/scenes" --max-side 0 --shard-size 1000
fi
common=(--dataset "$DATA/*/train-*.parquet" --crop-size 128 --batch-size 16 --width 0.25 --warmup-steps 100
        --lr 3e-4 --checkpoint-every 100 --eval-every 0 --report-to none --export-size 256 --no-progress)
hc=(--architecture hypercolumn --hidden-size 256 --fc-channels 1024 --norm batch)
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
run() {  # NAME ARGS...: train in the background, recording CPU and wall seconds
  local name=$1; shift
  mkdir -p "$RUNS/$name"
  nice -n 10 /usr/bin/time -o "$RUNS/$name/time.txt" -f "user %U system %S wall %e" \
    hf-colorize train "${common[@]}" "$@" --output-dir "$RUNS/$name" > "$RUNS/$name/train.log" 2>&1 &
}
if [ "${1:-train}" = train ]; then
  run eccv16 --max-steps 600 --prior-images 500
  run hc-lab "${hc[@]}" --max-steps 775
  run hc-huechroma "${hc[@]}" --color-space hue-chroma --max-steps 715
  wait
  exit 0
fi
for name in eccv16 hc-lab hc-huechroma; do
  hf-colorize evaluate --model "$RUNS/$name/final" --dataset "$DATA/imnet" --split test --json "$RUNS/$name/eval.json"
done
hf-colorize evaluate --model "$RUNS/hc-huechroma/final" --dataset "$DATA/imnet" --split test --no-chromatic-fading \
  --json "$RUNS/hc-huechroma/eval_nofading.json"
