"""AdderBoard's check of a submission file, as its README and submission template document it:

    python benchmarks/adderboard_verify.py SUBMISSION.py [--n 10000] [--seed 2025]

AdderBoard's own verify.py (https://github.com/anadim/AdderBoard) was not at hand when this was
written; this reproduces its documented protocol, not its code:
  - build_model() -> (model, metadata); metadata has name, author, params, architecture, tricks;
  - params must equal the model's unique parameters: each parameter once however many modules
    share it (counted by its memory, as a data_ptr), buffers not at all;
  - 10 edge cases (long carry chains, lopsided operands, zeros), then n random pairs drawn with
    random.Random(seed): for each, a digit count d uniform in 1..10, then a and b uniform in
    [0, 10^d) (the published verifiers draw them this way; operands 0..9,999,999,999);
  - it passes with at least 99% of the random pairs right.
Exit status 0 when it passes, 1 when it does not; the summary is printed either way.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path
from types import ModuleType

REQUIRED = ("name", "author", "params", "architecture", "tricks")
PASS = 0.99
EDGE_CASES = [
    (9_999_999_999, 9_999_999_999), (5_555_555_555, 5_555_555_555), (1_111_111_111, 8_888_888_888),
    (9_999_999_999, 1), (1, 1), (5, 5), (99, 1), (999_999_999, 999_999_999), (1_000_000_000, 9_999_999_999), (0, 0),
]


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
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        digits = rng.randint(1, 10)
        pairs.append((rng.randint(0, 10**digits - 1), rng.randint(0, 10**digits - 1)))
    return pairs


def score(module: ModuleType, model, pairs: list[tuple[int, int]]) -> tuple[int, list[tuple[int, int, int]]]:
    """Right answers, and the wrong ones as (a, b, answer)."""
    wrong = []
    for a, b in pairs:
        got = module.add(model, a, b)
        if got != a + b:
            wrong.append((a, b, got))
    return len(pairs) - len(wrong), wrong


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("submission", type=Path)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args(argv)
    module = load(args.submission)
    model, meta = module.build_model()
    missing = [k for k in REQUIRED if k not in meta]
    counted = unique_params(model)
    print(f"{meta.get('name')} by {meta.get('author')}: claims {meta.get('params')} parameters, counted {counted}")
    edge_right, edge_wrong = score(module, model, EDGE_CASES)
    print(f"edge cases: {edge_right}/{len(EDGE_CASES)}" + "".join(f"\n  {a} + {b} -> {c}" for a, b, c in edge_wrong))
    start = time.perf_counter()
    right, _ = score(module, model, random_pairs(args.n, args.seed))
    accuracy = right / args.n
    print(f"random pairs (n={args.n}, seed={args.seed}): {right}/{args.n} = {accuracy:.2%} "
          f"in {time.perf_counter() - start:.1f}s")
    ok = not missing and counted == meta.get("params") and accuracy >= PASS
    print(("PASSES" if ok else "FAILS") + (f" (metadata lacks {', '.join(missing)})" if missing else "")
          + ("" if counted == meta.get("params") else " (params differ from the count)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
