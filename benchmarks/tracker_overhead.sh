#!/usr/bin/env bash
# The cost of `--log tensorboard` per training step: the default addition run's median ms/step
# (metrics.jsonl) with and without the sink, alternating, ROUNDS times each. Run on a quiet machine.
#   bash benchmarks/tracker_overhead.sh [ROUNDS] [STEPS]
set -euo pipefail
rounds=${1:-5}
steps=${2:-400}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { python -c 'import json,statistics,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(statistics.median(x["ms_per_step"] for x in r if "ms_per_step" in x and x["step"] > 20))' "$1"; }
for i in $(seq "$rounds"); do
  for mode in none tensorboard; do
    out="$tmp/$mode-$i"
    extra=()
    [ "$mode" = tensorboard ] && extra=(--log tensorboard)
    python -m experiments train --task addition --steps "$steps" --target-acc 0 --set train.eval_interval=1000000 \
      --device cpu -q --out "$out" "${extra[@]}"
    echo "$mode $i $(median "$out/metrics.jsonl")"
  done
done | tee "$tmp/all.txt"
python - "$tmp/all.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {m: statistics.median(float(v) for mm, _, v in rows if mm == m) for m in ("none", "tensorboard")}
print(f"median ms/step: none {med['none']:.2f}, tensorboard {med['tensorboard']:.2f}, "
      f"overhead {100 * (med['tensorboard'] / med['none'] - 1):+.1f}%")
PY
