#!/usr/bin/env bash
# The Ray executor's overhead: one small spec (4 tiny addition runs, 2 at a time, one thread
# each) under --executor local and --executor ray, alternating, REPEATS times each; prints
# every wall time and the medians (docs/benchmarks.md, "Scaling out").
#
# Usage (repo root, the ray extra installed): bash benchmarks/executor_overhead.sh [REPEATS]
set -eu
REPEATS=${1:-3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/spec.toml" <<'TOML'
name = "overhead"
budget_minutes = 2
seeds = [1, 2]
[base]
task = "addition"
preset = "small"
steps = 20
target_acc = 0
resources = { num_cpus = 1 }
set = { "model.n_layer" = 1, "model.n_embd" = 32, "model.n_head" = 2, "model.block_size" = 12, "train.batch_size" = 16, "train.eval_interval" = 10, "train.eval_iters" = 2, "task.max_digits" = 2 }
[[variant]]
name = "fmt"
grid = { "task.reverse_answer" = [true, false] }
[[eval]]
split = "test"
n = 30
TOML
for i in $(seq "$REPEATS"); do
  for ex in local ray; do
    start=$(date +%s.%N)
    if [ "$ex" = local ]; then place="--jobs 2"; else place="--executor ray"; fi
    # shellcheck disable=SC2086
    python3 -m experiments run "$WORK/spec.toml" --out "$WORK/$ex-$i" $place > "$WORK/$ex-$i.txt" 2>&1
    python3 -c "print('$ex', round($(date +%s.%N) - $start, 1))"
  done
done | tee "$WORK/times.txt"
python3 - "$WORK/times.txt" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    ex, s = line.split()
    t.setdefault(ex, []).append(float(s))
loc, ray = statistics.median(t["local"]), statistics.median(t["ray"])
print(f"median wall: local {loc:.1f} s, ray {ray:.1f} s, ray/local {ray / loc:.2f}x (+{ray - loc:.1f} s)")
PY
