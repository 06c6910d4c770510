"""What the workbench offers, printed: `workbench tasks`, `presets` and `show`.

Light on purpose: these commands answer in well under a second, so nothing here imports torch,
pandas or matplotlib (tests/test_cli.py times them in a fresh process).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from experiments.console import key_column, print_table, stdout_console, text_column
from experiments.errors import UserError
from experiments.presets import PRESETS, Preset
from experiments.registry import known_tasks, task_class
from tasks.base import Example, Task


# ---- show ------------------------------------------------------------------------------------

def print_examples(task: Task, examples: list[Example]) -> None:
    """`workbench show`: each example's input tokens above their targets (masked ones as ·),
    under its prompt, target and answer when the task has problems."""
    console = stdout_console()
    console.print(Text.assemble((task.name, "bold"), f"  vocab {task.vocab.chars!r} ({len(task.vocab)} tokens)"))
    for ex in examples:
        if ex.prompt is not None:
            meta = ", ".join(f"{k}={v}" for k, v in ex.meta.items())
            # Text, not markup: prompts and traces hold brackets ("[34*6=204,...]") that are not tags
            console.print(Text.assemble("\n", (ex.prompt, "bold"), (ex.target or "", "green"),
                                        f"$   answer {ex.answer}" + (f"  ({meta})" if meta else "")), highlight=False)
        _print_alignment(console, ex.xs, ["·" if c is None else c for c in ex.ys])


def _print_alignment(console: Console, xs: list[str], ys: list[str]) -> None:
    vis = lambda c: {"\n": "⏎", " ": "␣"}.get(c, c)  # noqa: E731
    console.print("  input  " + " ".join(vis(c) for c in xs), highlight=False, markup=False)
    console.print("  target " + " ".join(vis(c) for c in ys), highlight=False, markup=False)


# ---- tasks -----------------------------------------------------------------------------------

def describe_task(cls: type[Task]) -> dict[str, Any]:
    cfg = cls.Config()
    return {
        "options": {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init},
        "splits": list(cls.splits),
        "buckets": list(cls.buckets),
    }


LIST_FORMATS = ("table", "json")


def _check_list_format(fmt: str) -> None:
    if fmt not in LIST_FORMATS:
        raise UserError(f"--format must be table or json, got {fmt!r}")


def _print_json(obj: Any) -> None:
    # default=str: an option of a plugin's task may hold a value JSON has no type for (a Path, ...)
    print(json.dumps(obj, indent=1, default=str))


def list_tasks(include: list[str], fmt: str = "table") -> None:
    """`workbench tasks`: every task with its origin, description, options (defaults), splits.

    fmt "json": one JSON list of {name, origin, description, options, splits, buckets}; a task
    that fails to load has {name, origin, error} instead."""
    _check_list_format(fmt)
    known = known_tasks(include)
    rows: list[dict[str, Any]] = []
    for name in sorted(known):
        origin = known[name]
        try:
            cls = task_class(name)
        except UserError as e:
            rows.append({"name": name, "origin": origin, "error": str(e)})
            continue
        rows.append({"name": name, "origin": origin, "description": cls.description, **describe_task(cls)})
    if fmt == "json":
        _print_json(rows)
        return
    table = Table(title="tasks")
    key_column(table, "task")
    key_column(table, "origin")
    text_column(table, "description")
    text_column(table, "options (defaults)")
    text_column(table, "splits")
    for row in rows:
        name, origin = Text(row["name"]), Text(row["origin"])
        if "error" in row:
            table.add_row(name, origin, Text(row["error"], style="red"), "", "")
            continue
        opts = "\n".join(f"{k}={v!r}" for k, v in row["options"].items())
        table.add_row(name, origin, Text(row["description"]), Text(opts), Text(", ".join(row["splits"])))
    print_table(table)


# ---- presets ---------------------------------------------------------------------------------

def describe_preset(p: Preset) -> dict[str, Any]:
    """A preset as `workbench presets --format json` shows it (keys kept stable for scripts)."""
    return {
        "name": p.name,
        "description": p.description,
        "tasks": list(p.for_tasks),
        "task": p.task_overrides(),
        "model": dataclasses.asdict(p.model),
        "train": dataclasses.asdict(p.train),
        "target_acc": p.train.target_acc,
    }


def list_presets(fmt: str = "table", archived: bool = False) -> None:
    """`workbench presets`: two plain lines per preset (never folded, so grep finds them), or
    with fmt "json" one JSON list of {name, description, tasks, task, model, train, target_acc}.
    Presets kept only to reproduce old figures are listed with `archived` alone."""
    _check_list_format(fmt)
    shown = [p for p in PRESETS.values() if archived or not p.archived]
    if fmt == "json":
        _print_json([describe_preset(p) for p in shown])
        return
    for p in shown:
        m, t = p.model, p.train
        print(f"{p.name:12s} {p.description}")
        print(f"{'':12s} model {m.n_layer}L {m.n_head}H {m.n_embd}d block {m.block_size}; "
              f"{t.steps} steps x batch {t.batch_size}, lr {t.lr}" + (f"; for {', '.join(p.for_tasks)}" if p.for_tasks else ""))
