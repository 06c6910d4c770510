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

    python benchmarks/calc_hardest_step.py --errors RUN SAMPLES.jsonl

counts instead where the wrong traces first go wrong: each problem that is wrong or has an
invalid trace is classed by the first step the trace checker rejects (with RUN's task options),
as the operation that step should have performed and its operands' digit counts
(`/ 4:2` a 4-digit value divided by a 2-digit one; `- neg` a + or - with a negative result),
`work` when the step's result was right and its digit-level work was not, or `malformed`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from tasks.calculator import CalculatorConfig, CalculatorTask
from experiments.errors import UserError
from experiments.rundir import read_config
from tasks.expr import ExprError, Node, Reduction, canonical_steps, first_reduction, split_trace

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


def step_class(r: Reduction) -> str:
    if r.op in "+-" and r.value < 0:
        return f"{r.op} neg"
    return f"{r.op} {len(str(abs(r.a)))}:{len(str(abs(r.b)))}"


def first_error(task: CalculatorTask, prompt: str, got: str) -> str | None:
    """The class of the first step of `got` that the trace checker rejects; None for a valid trace."""
    errors = task.trace_errors(prompt, got)
    if not errors:
        return None
    head = errors[0]
    if not head.startswith("step ") or "does not parse" in head:
        return "malformed"
    k = int(head.split()[1])
    prev = task.parse_prompt(prompt)
    try:
        for _, text in split_trace(got)[: k - 1]:  # the model's own steps up to the wrong one
            prev = task.syntax.parse(text)
    except ExprError:
        return "malformed"
    r = first_reduction(prev, task.config.division)
    if r is None:
        return "malformed"  # a step after the answer
    return step_class(r) + (" work" if " work " in head else "")


def error_table(path: Path, task: CalculatorTask) -> pd.Series:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    classes = [first_error(task, r["prompt"], r["got"]) for r in rows
               if not (r["correct"] and r.get("trace_valid", True))]
    return pd.Series([c for c in classes if c is not None], dtype=object).value_counts()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", nargs="+", type=Path)
    ap.add_argument("--errors", type=Path, metavar="RUN",
                    help="count the wrong traces' first wrong steps, with this calculator run's task options")
    args = ap.parse_args()
    if args.errors:
        try:
            task = CalculatorTask(CalculatorConfig(**read_config(args.errors)["task"]["config"]))
        except (UserError, TypeError, ValueError) as e:  # not a run, or not a calculator run
            ap.error(f"--errors {args.errors}: {e}")
        for path in args.samples:
            counts = error_table(path, task)
            print(f"\n{path.name}: {counts.sum()} wrong traces by their first wrong step\n")
            print("| step | errors |\n|---|---|")
            for name, count in counts.items():
                print(f"| `{name}` | {count} |")
        return
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
