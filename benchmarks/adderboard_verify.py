"""AdderBoard's check of a submission file, reimplemented from its verify.py (anadim/AdderBoard,
commit 525088b, read 2026-12-07):

    python benchmarks/adderboard_verify.py SUBMISSION.py [--n 10000] [--seed 2025]
    python benchmarks/adderboard_verify.py RUN_DIR [--checkpoint best.pt]   # the same, in seconds

  - build_model() -> (model, metadata); metadata has name, author, params, architecture, tricks;
  - 10 fixed edge cases (zeros, long carry chains, the largest operands), then n pairs drawn with
    random.Random(seed), each operand rng.randint(0, 9_999_999_999): most operands have 10 digits;
  - the accuracy is over all n + 10 cases, and a submission qualifies at >= 99%.
verify.py prints `params` as claimed; this script also counts the model's unique parameters
(each once however many modules share it, by its memory as a data_ptr; buffers not at all) and
fails a claim that differs.  Until 2026-12-07 this script assumed another draw (a digit count
1..10 first, then operands of that many digits) and other edge cases; that draw is easier.
Given a run directory instead of a file, the run's own model answers the same cases, decoded in
batches (`workbench export adderboard` writes that model; tests/test_adderboard.py checks that the
file answers as the run does), which takes seconds where the file's one-pair-at-a-time add() takes
about 2 minutes.
Exit status 0 when it qualifies, 1 when it does not; the summary is printed either way.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

from experiments.load import load_run
from gpt.model import count_parameters

REQUIRED = ("name", "author", "params", "architecture", "tricks")
PASS = 0.99
EDGE_CASES = [  # verify.py's, in its order (one pair twice, as there)
    (0, 0), (0, 1), (9_999_999_999, 0), (9_999_999_999, 1), (9_999_999_999, 9_999_999_999),
    (5_000_000_000, 5_000_000_000), (1_111_111_111, 8_888_888_889), (1_234_567_890, 9_876_543_210),
    (9_999_999_999, 9_999_999_999), (1, 9_999_999_999),
]
LARGEST = 9_999_999_999


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("submission", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unique_params(model) -> int:
    """Each parameter once, by its memory: tied weights (one tensor, several modules) count once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel()
    return total


def random_pairs(n: int, seed: int) -> list[tuple[int, int]]:
    """verify.py's draw: a then b, each uniform in 0..LARGEST."""
    rng = random.Random(seed)
    return [(rng.randint(0, LARGEST), rng.randint(0, LARGEST)) for _ in range(n)]


Adder = Callable[[list[tuple[int, int]]], list[int]]


def file_adder(path: Path) -> tuple[Adder, dict, int]:
    """A submission file, called as verify.py calls it: add(model, a, b), one pair at a time."""
    module = load(path)
    model, meta = module.build_model()
    return (lambda pairs: [module.add(model, a, b) for a, b in pairs]), meta, unique_params(model)


def run_adder(path: Path, checkpoint: str) -> tuple[Adder, dict, int]:
    """A run directory: its model's greedy completions, in batches (-1 where one does not parse)."""
    run = load_run(path, device="cpu", checkpoint=checkpoint)

    def answers(pairs: list[tuple[int, int]]) -> list[int]:
        completions = run.complete([run.task.prompt(a, b) for a, b in pairs])
        return [-1 if (v := run.task.parse_answer(c)) is None else v for c in completions]

    # the claim is the workbench's count, checked against this script's own, as a file's would be
    meta = {"name": path.name, "author": "this run", "params": count_parameters(run.model), "architecture": "",
            "tricks": []}
    return answers, meta, unique_params(run.model)


def score(adder: Adder, pairs: list[tuple[int, int]]) -> tuple[int, list[tuple[int, int, int]]]:
    """Right answers, and the wrong ones as (a, b, answer)."""
    wrong = [(a, b, got) for (a, b), got in zip(pairs, adder(pairs)) if got != a + b]
    return len(pairs) - len(wrong), wrong


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("submission", type=Path)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--checkpoint", default="ckpt.pt", help="a run directory's checkpoint (as export's)")
    args = ap.parse_args(argv)
    if args.submission.is_dir():
        adder, meta, counted = run_adder(args.submission, args.checkpoint)
    else:
        adder, meta, counted = file_adder(args.submission)
    missing = [k for k in REQUIRED if k not in meta]
    print(f"{meta.get('name')} by {meta.get('author')}: claims {meta.get('params')} parameters, counted {counted}")
    edge_right, edge_wrong = score(adder, EDGE_CASES)
    print(f"edge cases: {edge_right}/{len(EDGE_CASES)}" + "".join(f"\n  {a} + {b} -> {c}" for a, b, c in edge_wrong))
    start = time.perf_counter()
    right, wrong = score(adder, random_pairs(args.n, args.seed))
    print(f"random pairs (n={args.n}, seed={args.seed}): {right}/{args.n} = {right / args.n:.2%} "
          f"in {time.perf_counter() - start:.1f}s" + "".join(f"\n  {a} + {b} -> {c}" for a, b, c in wrong[:5]))
    total, passed = args.n + len(EDGE_CASES), right + edge_right
    accuracy = passed / total
    print(f"all cases: {passed}/{total} = {accuracy:.2%} (AdderBoard's figure; it qualifies at {PASS:.0%})")
    ok = not missing and counted == meta.get("params") and accuracy >= PASS
    print(("PASSES" if ok else "FAILS") + (f" (metadata lacks {', '.join(missing)})" if missing else "")
          + ("" if counted == meta.get("params") else " (params differ from the count)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
