#!/usr/bin/env bash
# Issue 20's GPU figures, one prepared script for a lent GPU (docs/benchmarks.md, "Scaling out"):
#   1. runs per hour: RUNS_N runs of the default addition task (16 seeds by default) with
#      K = 8, 4 and 1 runs sharing GPU 0 (`workbench run --gpus 0 --per-gpu K`);
#   2. the calculator's median ms/step with and without batch workers (--batch-workers 0 / 4);
#   3. the CUDA tests of batch workers and NCCL DDP (the latter skips with fewer than 2 GPUs).
# $OUT gets env.txt, per-K timings (runs_per_hour.csv), step times (batch_workers.csv), tests.txt.
#
# Usage (GPU machine, repo root): bash benchmarks/gpu_scaling.sh
# Try it on a CPU: DEV=cpu GPU_FLAGS= RUNS_N=2 KS="2 1" STEPS=20 CALC_STEPS=30 bash benchmarks/gpu_scaling.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/gpu-scaling}
RUNS=${RUNS_DIR:-/tmp/gpu-scaling-runs}
DEV=${DEV:-cuda}
RUNS_N=${RUNS_N:-16}
KS=${KS:-8 4 1}
CALC_STEPS=${CALC_STEPS:-400}
STEPS=${STEPS:-}          # empty: the default run, which stops at 1000/1000 held-out; a number caps it
GPU_FLAGS=${GPU_FLAGS---gpus 0}  # empty on a CPU: --per-gpu then becomes --jobs
mkdir -p "$OUT" "$RUNS"
WB="python3 -m experiments"

{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; } > "$OUT/env.txt" 2>&1

seeds=$(python3 -c "print(', '.join(str(s) for s in range(1, $RUNS_N + 1)))")
cat > "$RUNS/spec.toml" <<TOML
name = "runs_per_gpu"
description = "$RUNS_N runs of the default addition task"
budget_minutes = 15
seeds = [$seeds]
[base]
task = "addition"
device = "$DEV"
${STEPS:+steps = $STEPS}
resources = { num_cpus = 1 }
[[eval]]
split = "test"
n = 1000
TOML

echo "k,runs,elapsed_s,runs_per_hour" > "$OUT/runs_per_hour.csv"
for k in $KS; do
  if [ -n "$GPU_FLAGS" ]; then place="$GPU_FLAGS --per-gpu $k"; else place="--jobs $k"; fi
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  $WB run "$RUNS/spec.toml" --out "$RUNS/k$k" $place > "$OUT/run-k$k.txt" 2>&1
  python3 -c "e = $(date +%s.%N) - $start; print(f'$k,$RUNS_N,{e:.1f},{$RUNS_N * 3600 / e:.0f}')" \
    >> "$OUT/runs_per_hour.csv"
done

echo "batch_workers,median_ms_per_step" > "$OUT/batch_workers.csv"
for w in 0 4 0 4; do  # alternating, twice
  rm -rf "$RUNS/calc-w$w"
  $WB train --task calculator --device "$DEV" --steps "$CALC_STEPS" --target-acc 0 --quiet --batch-workers "$w" \
    --set train.compile=off --set train.eval_interval=1000 --out "$RUNS/calc-w$w" > "$OUT/calc-w$w.txt" 2>&1
  python3 - "$RUNS/calc-w$w/metrics.jsonl" "$w" >> "$OUT/batch_workers.csv" <<'PY'
import json, statistics, sys
recs = [json.loads(x) for x in open(sys.argv[1])]
ms = [r["ms_per_step"] for r in recs if "ms_per_step" in r and r["step"] > 20]
print(f"{sys.argv[2]},{statistics.median(ms):.2f}")
PY
done

timeout 300 python3 -m pytest tests/test_cuda.py -k "batch_workers or nccl" -v -p no:cacheprovider -o addopts="" \
  > "$OUT/tests.txt" 2>&1
cat "$OUT/runs_per_hour.csv" "$OUT/batch_workers.csv"; tail -4 "$OUT/tests.txt"
