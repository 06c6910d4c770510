"""What `workbench eval` prints: accuracy tables (rich, markdown, csv, json) and their plots.

Rich output goes through experiments/console.py, so a piped table is never cut or folded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rich.table import Table
from rich.text import Text

from experiments.console import fits_terminal, key_column, print_table, stdout_console
from experiments.errors import UserError, install_hint
from experiments.eval_runs import EvalTable
from experiments.outputs import check_output, write_output
from experiments.plots import heatmap_image, lines_image, pyplot
from experiments.tables import markdown_table, pct


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
