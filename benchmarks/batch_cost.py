"""What a training batch costs to make, preset by preset, in the loop's own way (issue 47; figures in
docs/benchmarks.md, "The tax again").

    OMP_NUM_THREADS=1 python benchmarks/batch_cost.py addition addition:add10-tiny calculator

Each argument is TASK or TASK:PRESET. A batch is the trainer's (make_batch_fn: drawn, rendered, masked,
with position ids where the model takes them, as tensors); the figure is the median ms of 60 batches
after 5. To compare two checkouts, run it from each in turn (PYTHONPATH=<checkout>, from a folder
outside both), alternating.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from experiments.batches import make_batch_fn
from experiments.build import build, position_ids
from experiments.runspec import resolve_spec


def batch_ms(task: str, preset: str | None, n: int = 60) -> float:
    spec = resolve_spec(task, preset, [], seed=1337)
    built, tr = build(spec), spec.train
    batch = make_batch_fn(built.task, spec.seed, tr.batch_size, built.model.block_size, torch.device("cpu"),
                          ids=position_ids(built.model))
    for i in range(5):
        batch("train", i, 0)
    times = []
    for i in range(n):
        t = time.perf_counter()
        batch("train", 100 + i, 0)
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    args = sys.argv[1:] or ["addition", "addition:add10-tiny", "calculator"]
    for arg in args:
        task, _, preset = arg.partition(":")
        print(f"{arg}: {batch_ms(task, preset or None):.3f} ms a batch")


if __name__ == "__main__":
    main()
