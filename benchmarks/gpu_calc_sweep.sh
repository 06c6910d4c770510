#!/usr/bin/env bash
# Calculator recipe sweep on a lent GPU (session 5, docs/LOG.md), sized to one call of a
# 15-minute lease: experiments/specs/gpu_calc_sweep.toml's 9 runs share GPU 0 at once
# (`--per-gpu 9`), each scored on 10,000 held-out problems of the uniform mix. Meanwhile
# the CUDA tests. $OUT gets env.txt, tests.txt, results.md/csv and runs.tgz (no checkpoints).
#
# Usage (GPU machine, repo root): bash benchmarks/gpu_calc_sweep.sh
# What it would run, on any machine:
#   workbench run experiments/specs/gpu_calc_sweep.toml --gpus 0 --per-gpu 9 --dry-run
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/gpu-sweep}
RUNS=${RUNS_DIR:-/tmp/gpu-sweep-runs}
GPUS=${GPUS:-0}
mkdir -p "$OUT"
WB="python3 -m experiments"

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/env.txt" 2>&1

$WB run experiments/specs/gpu_calc_sweep.toml --out "$RUNS" --gpus "$GPUS" --per-gpu 9 --timeout 600 \
  > "$OUT/sweep.txt" 2>&1 &
sweep=$!
# meanwhile: the length_chunks and batch-worker tests on CUDA
timeout 150 python3 -m pytest tests/test_cuda.py -k "length_chunks or batch_workers" -v -p no:cacheprovider \
  -o addopts="" > "$OUT/tests.txt" 2>&1
tail -5 "$OUT/tests.txt"
wait "$sweep"

cp "$RUNS"/results.md "$RUNS"/results.csv "$OUT"/ 2>/dev/null
find "$RUNS" -name '*.pt' -delete
tar czf "$OUT/runs.tgz" -C "$RUNS" .
cat "$OUT/sweep.txt"
