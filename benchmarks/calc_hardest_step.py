"""Calculator accuracy by the hardest operation a problem needs in one step.

    python benchmarks/calc_hardest_step.py SAMPLES.jsonl [SAMPLES.jsonl ...]

SAMPLES come from `workbench eval RUN --samples FILE` on a calculator run. Each problem is
classed by the hardest single operation its evaluation performs (with the values it meets,
intermediate results included):

    easy   + and - only
    *1     a product with a 1-digit factor (e.g. 2496*7)
    /      a quotient of a dividend under 4 digits
    *2x2   a product of two 2-digit numbers (e.g. 34*56)
    *big   a product of two multi-digit numbers, one of 3+ digits (e.g. 2496*78)
    /big   a quotient of a dividend of 4+ digits (e.g. 2496/78)

and the table gives each class's share of the problems and its exact-match accuracy. For
`cot=steps`, which writes every operation's result in one step, it shows which results the
model must compute without written work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from tasks.calculator import CalculatorConfig, CalculatorTask
from tasks.expr import Node, canonical_steps

CLASSES = ("easy", "*1", "/", "*2x2", "*big", "/big")


def operations(node: Node) -> list[tuple[str, int, int]]:
    """Every (op, left, right) the trace performs, in its order, with Python integer values
    (floor division, so samples from `division=floor` runs are classed too)."""
    return [(r.op, r.a, r.b) for r in canonical_steps(node, "floor")]


def op_class(op: str, a: int, b: int) -> str:
    da, db = len(str(abs(a))), len(str(abs(b)))
    if op in "+-":
        return "easy"
    if op == "/":
        return "/big" if da >= 4 else "/"
    if min(da, db) == 1:
        return "*1"
    return "*2x2" if max(da, db) == 2 else "*big"


def hardest(node: Node) -> str:
    return max((op_class(*o) for o in operations(node)), key=CLASSES.index, default="easy")


def table(path: Path, task: CalculatorTask) -> pd.DataFrame:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    df = pd.DataFrame({"cls": [hardest(task.parse_prompt(r["prompt"])) for r in rows],
                       "correct": [bool(r["correct"]) for r in rows]})
    g = df.groupby("cls")["correct"].agg(["size", "mean"]).reindex([c for c in CLASSES if c in set(df["cls"])])
    return pd.DataFrame({"share": g["size"] / len(df), "accuracy": g["mean"]}).T.assign(all=[1.0, df["correct"].mean()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", nargs="+", type=Path)
    args = ap.parse_args()
    task = CalculatorTask(CalculatorConfig(max_digits=9))  # parsing only
    for path in args.samples:
        t = table(path, task)
        print(f"\n{path.name}\n")
        print("| | " + " | ".join(f"`{c}`" if c != "all" else "all" for c in t.columns) + " |")
        print("|---" * (len(t.columns) + 1) + "|")
        for name, row in t.iterrows():
            print(f"| {name} | " + " | ".join(f"{v:.1%}" for v in row) + " |")


if __name__ == "__main__":
    main()
