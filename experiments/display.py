"""What the CLI prints: eval tables and heatmaps, `show` alignments, the task and preset lists.

Everything that reaches stdout through rich goes through `stdout_console` / `print_table`, so
that piped output (`workbench tasks | grep multiplication`) never has a cell cut or folded.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from experiments.errors import UserError, install_hint
from experiments.eval_runs import EvalTable
from experiments.outputs import check_output, write_output
from experiments.plots import heatmap_image, lines_image, pyplot
from experiments.presets import PRESETS, Preset
from experiments.registry import known_tasks, task_class
from experiments.tables import markdown_table, pct
from tasks.base import Example, Task

# Piped stdout is read by grep, awk and people's scripts, not by a person at a terminal of known
# width: render as wide as the content needs (rich would otherwise assume 80 columns, or $COLUMNS).
PIPE_WIDTH = 1_000_000


# ---- output ----------------------------------------------------------------------------------

def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stdout_console(width: int | None = None) -> Console:
    """A console on stdout: the terminal's width on a terminal, unlimited when piped."""
    if not stdout_is_terminal():
        return Console(width=PIPE_WIDTH)
    return Console(width=width)


def key_column(table: Table, header: str | Text, **kw: Any) -> None:
    """A column whose cells must never be cut or wrapped (names, bucket keys, figures)."""
    table.add_column(header, no_wrap=True, **kw)


def text_column(table: Table, header: str | Text, **kw: Any) -> None:
    """A free-text column (descriptions, option lists): it wraps, and folds a long word, on a
    narrow terminal so that the key columns can stay whole."""
    table.add_column(header, overflow="fold", **kw)


FOLD_WIDTH = 12  # the narrowest a free-text column gets before a table is printed wider than the terminal


def table_min_width(table: Table) -> int:
    """The narrowest the table can be with every key column whole and every free-text column at
    least FOLD_WIDTH wide (rich's own measurement, key columns pinned to their widest cell)."""
    wide = Console(width=PIPE_WIDTH)
    folded = []
    for col in table.columns:
        if col.no_wrap:
            cells = [col.header, *col.cells] if table.show_header else list(col.cells)
            col.min_width = max(Measurement.get(wide, wide.options, c).maximum for c in cells) if cells else None
        elif col.overflow == "fold" and col.max_width is None:
            col.max_width = FOLD_WIDTH  # only while measuring: rich may fold such a column this far
            folded.append(col)
    try:
        return Measurement.get(wide, wide.options, table).minimum
    finally:
        for col in folded:
            col.max_width = None


def fits_terminal(table: Table) -> bool:
    """Whether the table fits stdout with its key columns whole (always, when piped)."""
    return not stdout_is_terminal() or table_min_width(table) <= Console().width


def print_table(table: Table) -> None:
    """Print a table so that no key column is ever cut: piped, at unlimited width; on a terminal,
    at the terminal's width, or wider when even the narrowest layout needs more (the terminal
    then wraps the lines, but rich would otherwise crop them)."""
    if not stdout_is_terminal():
        stdout_console().print(table)
        return
    stdout_console(max(Console().width, table_min_width(table))).print(table)


# ---- eval ------------------------------------------------------------------------------------

def format_eval(result: EvalTable, fmt: str) -> str:
    """An eval table as csv, json or markdown (the --out file of `--format table` is markdown)."""
    t = result.table
    if fmt == "csv":
        return t.to_csv(index=False)
    if fmt == "json":
        return json.dumps(t.to_dict(orient="records"), indent=1)
    if result.metric == "loss":
        return markdown_table(t.columns, [[f"{v:.4f}" if isinstance(v, float) else v for v in row]
                                          for row in t.itertuples(index=False)])
    by = result.by or [c for c in ("bucket",) if c in t.columns]  # a task without buckets: one "all" row
    extra = _extra_columns(t, by)
    rows = [[r["run"], *[r[b] for b in by], int(r["n"]), int(r["correct"]), pct(r["accuracy"]),
             f"{pct(r['ci_low'])} – {pct(r['ci_high'])}", *[pct(r[c]) for c in extra]] for _, r in t.iterrows()]
    return markdown_table(["run", *by, "n", "correct", "accuracy", "95% CI", *extra], rows)


def print_eval(result: EvalTable, fmt: str, title: str) -> None:
    """What `workbench eval` prints: a rich table (accuracy) or plain text."""
    if fmt == "table" and result.metric == "accuracy":
        print_rich(result.table, result.by, title)
    elif fmt == "table":
        print(result.table.to_string(index=False))
    else:
        print(format_eval(result, fmt))


def _extra_columns(t: pd.DataFrame, by: list[str]) -> list[str]:
    """Task metrics beyond exact match (e.g. trace_valid), as shares."""
    return [c for c in t.columns if c not in ("run", *by, "n", "correct", "accuracy", "ci_low", "ci_high")]


def print_rich(t: pd.DataFrame, by: list[str], title: str) -> None:
    """Runs side by side (one row per bucket, one column group per run), or one table per run.

    Every column holds a key or a figure, so none may be cut. Side by side when that fits (piped
    output always fits); otherwise, and for a single run, each run's table under a heading line
    that names the run in full."""
    runs = list(dict.fromkeys(t["run"]))
    if len(runs) > 1:
        table = _accuracy_table(t, by, runs, title)
        if fits_terminal(table):
            print_table(table)
            return
    for i, r in enumerate(runs):
        # a heading line, not a table title: rich wraps a title to the table's width
        stdout_console().print(Text(("\n" if i else "") + f"{title}: {r}", style="italic"), soft_wrap=True)
        print_table(_accuracy_table(t, by, [r], None))


def _accuracy_table(t: pd.DataFrame, by: list[str], runs: list[str], title: str | None) -> Table:
    extra = _extra_columns(t, by)
    table = Table(title=Text(title) if title else None)
    for b in by or ["bucket"]:
        key_column(table, Text(b), justify="right")
    heads = ["n", "correct", "accuracy", "95% CI", *extra]
    for r in runs:
        if len(runs) == 1:
            for head in heads:
                key_column(table, Text(head), justify="right")
            continue
        # side by side, the run's name heads its group once, not over each of its columns:
        # four copies of a long name made multi-run tables too wide for any terminal
        for k, head in enumerate(heads):
            key_column(table, Text(f"{Path(r).name if k == 0 else ''}\n{head}"), justify="right")
    keys = by or []
    first = t[t["run"] == runs[0]]
    for _, row in first.iterrows():
        label = [str(row[b]) for b in keys] if keys else ["all"]
        cells = []
        for r in runs:
            sel = t[t["run"] == r]
            for b in keys:
                sel = sel[sel[b] == row[b]]
            if sel.empty:
                cells += ["-"] * (4 + len(extra))
                continue
            s = sel.iloc[0]
            cells += [str(int(s["n"])), str(int(s["correct"])), pct(s["accuracy"]),
                      f"{pct(s['ci_low'])}–{pct(s['ci_high'])}", *[pct(s[c]) for c in extra]]
        table.add_row(*map(Text, label), *map(Text, cells), style="bold" if "all" in label else None)
    return table


def check_plot_path(path: Path) -> Path:
    """`eval --plot`'s file, refused before the evaluation: matplotlib installed, a format it
    writes (by the suffix), and a path outputs.check_output accepts."""
    plt = pyplot()
    if plt is None:
        raise UserError(f"--plot needs matplotlib: {install_hint('plot')}")
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    return check_output(path, "--plot", tuple(sorted(f".{f}" for f in formats)))


def eval_plot(result: EvalTable, path: Path) -> None:
    """`eval --plot`, written atomically: accuracy against the --by column, one line per run; or,
    with two --by columns, one accuracy heatmap per run."""
    runs = list(dict.fromkeys(result.table["run"]))
    panels = [(Path(r).name, result.table[result.table["run"] == r]) for r in runs]
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        if len(result.by) == 1:
            image = lines_image(panels, result.by[0], fmt=fmt)
        else:
            image = heatmap_image(panels, tuple(result.by), fmt=fmt)
    except ValueError as e:  # an image format matplotlib does not write
        raise UserError(f"--plot {path}: {e}") from None
    if image is None:
        raise UserError(f"--plot needs matplotlib: {install_hint('plot')}")
    write_output(path, image, "--plot")


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
