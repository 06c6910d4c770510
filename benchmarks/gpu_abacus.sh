#!/usr/bin/env bash
# Issue 17's GPU check, prepared for a lent GPU: Abacus in its own setting (McLeish et al. 2024),
# addition trained on operands of 1-20 digits and tested on 21-100, with coupled_rel beside it
# on the same problems as the reference. Sized to fit one 10-minute device call.
#
#   1. both runs train at once, sharing the GPU, each for TRAIN_S seconds of training;
#   2. each is evaluated in distribution and by operand length on 21..100 digits;
#   3. logs, eval tables (markdown, and JSON by length) and the accuracy-by-length plot land in $OUT.
#
# The random training offset covers every tested length: ids run to model.max_pos (128 >= 100
# digits + 1), as the paper's k = 100 does, so each id a 100-digit test uses is trained.
#
# Usage (on the GPU machine, repo root): bash benchmarks/gpu_abacus.sh
# Try it on a CPU first:  DEV=cpu TRAIN_S=5 EVAL_N=200 N_LAYER=1 N_EMBD=32 bash benchmarks/gpu_abacus.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/gpu-abacus}
RUNS=${RUNS_DIR:-/tmp/gpu-abacus-runs}
DEV=${DEV:-cuda}
TRAIN_S=${TRAIN_S:-420}    # training seconds per run; evals come on top
EVAL_N=${EVAL_N:-16000}    # 21..100 digits: 200 problems per length
N_LAYER=${N_LAYER:-4}
N_EMBD=${N_EMBD:-256}
mkdir -p "$OUT" "$RUNS"
WB="python3 -m experiments"

{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"; } 2>&1 | tee "$OUT/env.txt"

common=(--task addition --preset lengthgen --device "$DEV" --seed 1 --target-acc 0 --quiet
        --set task.max_digits=20 --set task.ood_max_digits=100 --set task.ood_sampling=lengths
        --set model.max_pos=128 --set model.block_size=320 --set model.n_layer="$N_LAYER"
        --set model.n_embd="$N_EMBD" --set train.steps=1000000 --set train.eval_interval=1000
        --set train.batch_size=256 --set train.lr=1e-3 --set train.min_lr=1e-4 --set train.pack=true
        --set train.time_budget_s="$TRAIN_S")
pids=()
for pos in abacus coupled_rel; do
  $WB train "${common[@]}" --set model.pos=$pos --out "$RUNS/$pos" > "$OUT/train-$pos.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

for pos in abacus coupled_rel; do
  tail -2 "$OUT/train-$pos.log"
  $WB eval "$RUNS/$pos" --device "$DEV" --n 2000 --format markdown 2>&1 | tee "$OUT/eval-$pos-test.md" | tail -3
  cp "$RUNS/$pos/metrics.jsonl" "$OUT/metrics-$pos.jsonl"
done
# one eval of both runs: the by-length table (JSON) and the plot, a line per run
$WB eval "$RUNS/abacus" "$RUNS/coupled_rel" --device "$DEV" --split ood --n "$EVAL_N" --by a_digits \
  --format json --out "$OUT/eval-ood.json" --plot "$OUT/abacus-by-length.png" > "$OUT/eval-ood.log" 2>&1
tail -3 "$OUT/eval-ood.log"
