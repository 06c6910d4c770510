#!/usr/bin/env bash
# One prepared device check for a lent GPU, sized to a 15-minute lease (docs/benchmarks.md).
#
#   1. long runs start first, in the background, sharing the GPU: the grokking runs
#      (division mod 97, symbols and digits, weight decay 1 and 0) and calculator
#      cot=steps runs with EX4 variants, to count the steps each needs;
#   2. meanwhile the CUDA tests (tests/test_cuda.py);
#   3. once the runs are done: held-out evals of the calculator runs, then benchmarks
#      (train ms/step, decode problems/s) with nothing else on the GPU;
#   4. everything lands in $OUT: logs, and the run folders (metrics, no checkpoints) as a tarball.
#
# Usage (on the GPU machine, repo root): GROK_S=270 bash benchmarks/gpu_check.sh
# Needs tiny Shakespeare in $WORKBENCH_DATA_DIR (default .gpu/data) for the text benchmark.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD WORKBENCH_DATA_DIR=${WORKBENCH_DATA_DIR:-$PWD/.gpu/data}
OUT=${OUT:-/tmp/gpu-check}
GROK_S=${GROK_S:-270}     # training seconds per background run
RUNS=${RUNS_DIR:-/tmp/gpu-runs}
DEV=${DEV:-cuda}          # DEV=cpu CALC_STEPS=20 GROK_S=5 tries the script out on a CPU
CALC_STEPS=${CALC_STEPS:-12000}
mkdir -p "$OUT" "$RUNS"
WB="python3 -m experiments"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc; } 2>&1 | tee "$OUT/env.txt"

pids=()
grok() {  # name, then --set pairs
  local name=$1; shift
  OMP_NUM_THREADS=2 $WB train --task modular --device "$DEV" --out "$RUNS/$name" \
    --set train.steps=200000 --set train.compile=off --set train.time_budget_s="$GROK_S" "$@" \
    > "$RUNS/$name.log" 2>&1 &
  pids+=($!)
}
grok grok-sym-wd1 --set task.tokens=symbols --set train.weight_decay=1.0
grok grok-sym-wd0 --set task.tokens=symbols --set train.weight_decay=0.0
grok grok-dig-wd1 --set task.tokens=digits --set train.weight_decay=1.0
grok grok-dig-wd0 --set task.tokens=digits --set train.weight_decay=0.0

calc() {  # name, then --set pairs; the CPU preset's 12,000 steps x 64, uncompiled like the CPU
  local name=$1; shift
  OMP_NUM_THREADS=2 $WB train --task calculator --preset calc-v1 --device "$DEV" --out "$RUNS/$name" \
    --set train.compile=off --set train.eval_interval=500 --set train.steps="$CALC_STEPS" --set train.time_budget_s="$GROK_S" "$@" > "$RUNS/$name.log" 2>&1 &
  pids+=($!)
}
calc calc-base
calc calc-modern --set model.norm=rmsnorm --set model.mlp=swiglu --set model.qk_norm=true
calc calc-modern-rope --set model.norm=rmsnorm --set model.mlp=swiglu --set model.qk_norm=true --set model.pos=rope
calc calc-modern-lr3 --set model.norm=rmsnorm --set model.mlp=swiglu --set model.qk_norm=true --set train.lr=3e-3 --set train.min_lr=3e-4

timeout 240 python3 -m pytest tests/test_cuda.py -v -s -p no:cacheprovider -o addopts="" 2>&1 | tee "$OUT/tests.txt" | tail -25

for p in "${pids[@]}"; do wait "$p"; done
for r in calc-base calc-modern calc-modern-rope calc-modern-lr3; do
  timeout 60 $WB eval "$RUNS/$r" --n "${EVAL_N:-10000}" --device "$DEV" --format markdown 2>&1 | tee "$OUT/eval-$r.txt" | tail -6
done
timeout 90 $WB bench --task calculator --preset calc-v1 --device "$DEV" --run "$RUNS/calc-base" --json "$OUT/bench-calculator.json" 2>&1 | tail -12
timeout 90 $WB bench --task shakespeare --device "$DEV" --json "$OUT/bench-shakespeare.json" 2>&1 | tail -12

find "$RUNS" -name '*.pt' -delete
tar czf "$OUT/runs.tgz" -C "$RUNS" .
for f in "$RUNS"/*.log; do echo "== $f"; tail -3 "$f"; done
