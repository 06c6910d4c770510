#!/usr/bin/env bash
# Calculator recipe sweep on a lent GPU (session 5, docs/LOG.md), sized to one call of a
# 15-minute lease. Each recipe runs the number of steps that fits the 20-minute CPU budget
# (cot=steps) or the 30-minute one (3-digit cot=full), measured with `workbench bench` on the
# 2-core CPU; GPU steps predict CPU steps (same data, same gradient; session 4: 89.71% vs
# 88.61%). length_chunks=1 on the GPU: the same gradient as the CPU's K=4, fewer launches.
# All runs share the GPU at once, then each is scored on 10,000 held-out problems of the
# uniform mix; $OUT gets env.txt, logs.txt, evals.csv and runs.tgz (metrics, per-problem samples).
#
# Usage (GPU machine, repo root): bash benchmarks/gpu_calc_sweep.sh
# Dry run on a CPU: DEV=cpu SCALE=0.002 EVAL_N=50 bash benchmarks/gpu_calc_sweep.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1
OUT=${OUT:-/tmp/gpu-sweep}
RUNS=${RUNS_DIR:-/tmp/gpu-sweep-runs}
DEV=${DEV:-cuda}
SCALE=${SCALE:-1}          # multiplies every step count (dry runs)
BUDGET_S=${BUDGET_S:-420}  # a safety stop per run; a run cut by it is marked in its log
EVAL_N=${EVAL_N:-10000}
mkdir -p "$OUT" "$RUNS"
WB="python3 -m experiments"
UNIFORM="--set task.op_weights= --set task.n_ops_weights= --set task.digit_weights="
STEPS="--set model.pos=rope --set task.op_weights=1,1,3,1 --set task.n_ops_weights=2,1,1"
FULL3="--set task.max_digits=3 --set task.cot=full --set model.block_size=540 --set train.batch_size=32"

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/env.txt" 2>&1

run() {  # name, steps, then --set pairs: train, then evaluate on the uniform mix
  local name=$1 steps; steps=$(python3 -c "print(max(20, round($2 * $SCALE)))"); shift 2
  { $WB train --task calculator --preset calc-v1 --device "$DEV" --out "$RUNS/$name" --steps "$steps" \
      --set train.compile=off --set train.length_chunks=1 --set train.time_budget_s="$BUDGET_S" \
      --set train.eval_interval=1000 "$@" > "$RUNS/$name.log" 2>&1
    timeout 180 $WB eval "$RUNS/$name" --n "$EVAL_N" --device "$DEV" $UNIFORM --format csv \
      --samples "$RUNS/$name.samples.jsonl" > "$RUNS/$name.eval.csv" 2>&1; } &
}
run S0-E          16000 $STEPS
run S1-dw13       14000 $STEPS --set task.digit_weights=1,3
run S2-dw13-wd0   14000 $STEPS --set task.digit_weights=1,3 --set train.weight_decay=0
run S3-dw13-b128   9000 $STEPS --set task.digit_weights=1,3 --set train.batch_size=128
run S4-dw13-d192   9500 $STEPS --set task.digit_weights=1,3 --set model.n_embd=192
run S5-dw14-n411  14500 $STEPS --set task.digit_weights=1,4 --set task.n_ops_weights=4,1,1
run S6-dw13-mul6  13500 $STEPS --set task.digit_weights=1,3 --set task.op_weights=1,1,6,1
run S7-dw13-lr3   14000 $STEPS --set task.digit_weights=1,3 --set train.lr=3e-3 --set train.min_lr=3e-4
run F1-full3-rope 13000 $FULL3 --set model.pos=rope
# meanwhile: the length_chunks tests on CUDA (session 4 could not run them)
timeout 150 python3 -m pytest tests/test_cuda.py -k length_chunks -v -p no:cacheprovider -o addopts="" \
  > "$OUT/tests.txt" 2>&1
tail -5 "$OUT/tests.txt"
wait

for f in "$RUNS"/*.log; do echo "== $f"; tail -2 "$f"; done > "$OUT/logs.txt"
cat "$RUNS"/*.eval.csv > "$OUT/evals.csv"
find "$RUNS" -name '*.pt' -delete
tar czf "$OUT/runs.tgz" -C "$RUNS" .
cat "$OUT/logs.txt" "$OUT/evals.csv"
