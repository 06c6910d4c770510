"""Evaluation speed at a given operand length: problems/s with one-pass scoring (the eval's way:
one forward pass finds the rows that greedy decoding writes right, and only the rest are
decoded) against decoding every row (issue 43; figures in docs/benchmarks.md, "Evaluation").

    python benchmarks/eval_rate.py RUN --digits 100 [--n 2000] [--pairs 3]
    python benchmarks/eval_rate.py RUN --digits 0      # the run's own ood split (lengthgen: 11-100, mixed)

RUN is an addition run whose block holds the length (`--preset lengthgen`).  With --digits D every
problem has both operands of exactly D digits (the ood split with max_digits = D - 1): decoding
then has one prompt length, one batch.  With --digits 0 the problems are the run's ood split, whose
many prompt lengths make decoding's batches small (it groups rows by prompt length).  The two ways
alternate on the same problems, --pairs times, and must give the same completions.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from experiments import load_run
from experiments.evaluate import answers, complete_rendered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--digits", type=int, default=100, help="both operands this long; 0: the run's ood split")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--decode-n", type=int, default=0, help="problems for decoding every row (0: --n)")
    a = ap.parse_args()
    run = load_run(a.run, device="cpu")
    task = run.task if a.digits == 0 else type(run.task)(dataclasses.replace(
        run.task.config, max_digits=a.digits - 1, ood_max_digits=a.digits, ood_sampling="both"))
    r = task.render(next(iter(task.eval_problems(0, "ood", a.n, chunk=a.n))))
    m = run.model.eval()
    k = a.decode_n or a.n
    sub = type(r)(r.chars[:k], r.prompt_len[:k], r.length[:k])
    one, every = [], []
    for _ in range(a.pairs):
        t = time.perf_counter(); fast = answers(m, task, r); one.append(a.n / (time.perf_counter() - t))
        t = time.perf_counter(); slow = complete_rendered(m, task, sub); every.append(k / (time.perf_counter() - t))
        if fast[:k] != slow:
            raise SystemExit("one-pass scoring and decoding disagree")
    right = sum(g == r.target(i) for i, g in enumerate(fast)) / a.n
    what = f"{a.digits}-digit operands" if a.digits else "the ood split"
    print(f"{what}, {a.n} problems ({right:.2%} right), {torch.get_num_threads()} threads: "
          f"one pass {statistics.median(one):.1f} problems/s, decoding every row {statistics.median(every):.1f} "
          f"problems/s ({k} problems), {statistics.median(one) / statistics.median(every):.1f}x")


if __name__ == "__main__":
    main()
