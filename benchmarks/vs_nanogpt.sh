#!/bin/bash
# Alternate nanoGPT's README CPU run and `workbench train --preset nanogpt-cpu`, ROUNDS times each.
# Usage: NANOGPT_GIT=<nanoGPT git dir> benchmarks/vs_nanogpt.sh [ROUNDS] [ITERS]
set -euo pipefail
rounds=${1:-2}; iters=${2:-2000}
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$here/../shared}
for r in $(seq "$rounds"); do
  NANOGPT_GIT="$NANOGPT_GIT" "$shared/tools/nanogpt-cpu" "$iters"
  out=$(mktemp -d)
  WORKBENCH_DATA_DIR="$shared/data" workbench train --task shakespeare --preset nanogpt-cpu --steps "$iters" \
    --set train.lr_decay_steps="$iters" --out "$out/run" --quiet --device cpu
  python3 - "$out/run/metrics.jsonl" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ms = [r["ms_per_step"] for r in recs if "ms_per_step" in r and r["step"] > 10 and "val_loss" not in r]
last = [r for r in recs if "val_loss" in r][-1]
print(f"workbench cpu: median {statistics.median(ms):.1f} ms/iter over {len(ms)} iters; step {last['step']} val loss {last['val_loss']:.4f}")
PY
  rm -rf "$out"
done
