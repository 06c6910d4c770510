"""Does building the next batch in a background thread pay on the CPU? `workbench train` as it is (batches
made in the loop) against the same run with the Prefetcher that CUDA runs use, patched in; fresh
processes, alternating (docs/benchmarks.md, "The framework tax").

    python benchmarks/prefetch_cpu.py --task addition --preset add10-tiny [--steps 300] [--pairs 3]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bare_loop import arguments  # this script's folder is on sys.path when it runs

ROOT = Path(__file__).resolve().parent.parent
# the child: `workbench train`, its batch source swapped for the Prefetcher when argv[1] is "prefetch"
CHILD = r'''
import sys
import experiments.batches as b
import experiments.training as t
def prefetched(task, seed, batch_size, block_size, device, rank, grad_accum, workers, ids=None, curriculum=None,
               level=b._level_zero):
    pre = b.Prefetcher(b.make_batch_fn(task, seed, batch_size, block_size, device, rank, grad_accum, ids, curriculum,
                                       level), grad_accum, level)
    return pre, pre.close
if sys.argv[1] == "prefetch":
    t.batch_source = prefetched
from experiments.cli import main
sys.exit(main(sys.argv[2:]))
'''


def ms_per_step(mode: str, args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", CHILD, mode, "train", *args, "--out", f"{tmp}/run"], check=True, cwd=ROOT)
        lines = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
    return statistics.median([r["ms_per_step"] for r in map(json.loads, lines) if "ms_per_step" in r][2:])


def main() -> None:
    a = arguments(__doc__)
    args = ["--task", a.task, *(["--preset", a.preset] if a.preset else []), "--steps", str(a.steps), "-q",
            "--set", f"train.eval_interval={a.steps}", "--set", "train.target_acc=0"]
    times: dict[str, list[float]] = {"loop": [], "prefetch": []}
    for _ in range(a.pairs):
        for mode in times:
            times[mode].append(ms_per_step(mode, args))
    print(f"{a.task}/{a.preset or 'default'} ms/step: in the loop {times['loop']}, prefetched {times['prefetch']}; "
          f"ratio {statistics.median(times['prefetch']) / statistics.median(times['loop']):.3f}")


if __name__ == "__main__":
    main()
