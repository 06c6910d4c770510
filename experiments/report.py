"""What the CLI prints: eval tables, `show` alignments, the task and preset lists.

Everything that reaches stdout through rich goes through `stdout_console` / `print_table`, so
that piped output (`workbench tasks | grep multiplication`) never has a cell cut or folded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from experiments.config import PRESETS, parse_sets
from experiments.errors import UserError

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


def check_writable(path: Path, flag: str) -> None:
    """Refuse an output path that cannot be written before the (possibly long) work starts.

    Writing a probe file in the folder is the one test that answers for permissions, read-only
    file systems and the rest alike; the real write later is atomic (temp file, then os.replace)."""
    from experiments.evaluate import output_target

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    target, atomic = output_target(path)
    if not atomic:  # /dev/stdout, a named pipe: written in place
        if not os.access(target, os.W_OK):
            raise UserError(f"cannot write {flag} {path}: permission denied")
        return
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
    except OSError as e:
        raise UserError(f"cannot write {flag} {path}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)


def write_output(path: Path, data: str | bytes, flag: str) -> None:
    """Write an output file atomically: a failed write leaves the old file (or none), never half of one."""
    from experiments.evaluate import output_target
    from gpt.checkpoint import atomic_write_bytes

    data = data.encode("utf-8") if isinstance(data, str) else data
    try:
        target, atomic = output_target(path)
        if atomic:
            atomic_write_bytes(target, data)
        else:
            with open(target, "wb") as f:
                f.write(data)
    except OSError as e:
        raise UserError(f"cannot write {flag} {path}: {e.strerror or e}") from None


# ---- eval ------------------------------------------------------------------------------------

def eval_runs(runs: list[Path], n: int, split: str, by: str | None, sets: list[str], fmt: str,
              out: Path | None, samples: Path | None, plot: Path | None, batch_size: int, seed: int,
              checkpoint: str, device: str) -> pd.DataFrame:
    from experiments.evaluate import evaluate, evaluate_loss
    from experiments.runs import load_run

    if n <= 0:
        raise UserError(f"--n must be positive, got {n}")
    if batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    if fmt not in ("table", "csv", "markdown", "json"):
        raise UserError(f"--format must be table, csv, markdown or json, got {fmt!r}")
    over = parse_sets(sets)
    if over["model"] or over["train"]:
        raise UserError("eval accepts only task.* overrides in --set")
    # an unwritable output path fails now, not after minutes of decoding
    sample_paths = [samples if len(runs) == 1 or samples is None else samples.with_suffix(f".{i}{samples.suffix}")
                    for i in range(len(runs))]
    for path, flag in [(out, "--out"), (plot, "--plot"), *[(s, "--samples") for s in sample_paths]]:
        if path is not None:
            check_writable(path, flag)
    tables = []
    for i, path in enumerate(runs):
        run = load_run(path, device=device, checkpoint=checkpoint, task_overrides=over["task"])
        task = run.task
        if task.kind == "text":  # language modelling: the loss on n fixed windows, not accuracy
            if split not in ("train", "val"):
                raise UserError(f"run {path} is a text run ({task.name}): --split must be train or val")
            t = evaluate_loss(run.model, task, split=split, n=n, seed=seed)
            t.insert(0, "run", str(path))
            tables.append((t, []))
            continue
        if split not in task.splits:
            raise UserError(f"task {task.name!r} has no split {split!r}; it has {', '.join(task.splits)}")
        need = task.max_length((split,)) - 1
        if need > run.model.config.block_size:
            raise UserError(f"run {path} has block_size {run.model.config.block_size}, but {split!r} problems of "
                            f"this task need {need}; evaluate shorter problems (--set task.…) or train a longer block")
        cols = [c.strip() for c in by.split(",") if c.strip()] if by else list(getattr(task, "default_by", ()))
        unknown = [c for c in cols if c not in task.buckets]
        if unknown:
            raise UserError(f"--by: unknown column {unknown[0]!r}; task {task.name!r} has {', '.join(task.buckets) or 'no buckets'}")
        if plot and len(cols) != 2:  # checked before the evaluation, which can take minutes
            raise UserError("--plot draws a heatmap of two bucket columns: pass --by A,B (e.g. a_digits,b_digits)")
        try:
            t = evaluate(run.model, task, split=split, n=n, by=cols, batch_size=batch_size, seed=seed,
                         samples=sample_paths[i])
        except OSError as e:
            if sample_paths[i] is None:
                raise
            raise UserError(f"cannot write --samples {sample_paths[i]}: {e.strerror or e}") from None
        label = str(path) if str(path) not in [x["run"].iloc[0] for x, _ in tables] else f"{path} #{i + 1}"
        t.insert(0, "run", label)
        tables.append((t, cols))
    table = pd.concat([t for t, _ in tables], ignore_index=True)
    cols = tables[0][1]
    if "loss" in table.columns:  # text runs
        if "accuracy" in table.columns:
            raise UserError("evaluate text runs and problem runs separately: one reports loss, the other accuracy")
        text = table.to_csv(index=False) if fmt == "csv" else (
            json.dumps(table.to_dict(orient="records"), indent=1) if fmt == "json" else md_table(table)
            if fmt == "markdown" else table.to_string(index=False))
        print(text)
        if out:
            write_output(out, text, "--out")
        return table
    text = render_table(table, cols, fmt)
    if fmt == "table":
        print_rich(table, cols, f"{split} accuracy, n={n}")
    else:
        print(text)
    if out:
        write_output(out, text if fmt != "table" else render_table(table, cols, "markdown"), "--out")
    if plot:
        heatmap(table, cols, plot)
    return table


def render_table(t: pd.DataFrame, by: list[str], fmt: str) -> str:
    if fmt == "csv":
        return t.to_csv(index=False)
    if fmt == "json":
        return json.dumps(t.to_dict(orient="records"), indent=1)
    return markdown(t, by)


def md_table(t: pd.DataFrame) -> str:
    """A plain markdown table of a DataFrame (floats to 4 decimals)."""
    cells = lambda row: [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]  # noqa: E731
    lines = ["| " + " | ".join(map(str, t.columns)) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in t.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "nan" if x != x else f"{100 * x:.2f}%"


def markdown(t: pd.DataFrame, by: list[str]) -> str:
    by = by or [c for c in ("bucket",) if c in t.columns]  # a task without buckets: one "all" row
    extra = [c for c in t.columns if c not in ("run", *by, "n", "correct", "accuracy", "ci_low", "ci_high")]
    head = ["run", *by, "n", "correct", "accuracy", "95% CI", *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in t.iterrows():
        cells = [str(r["run"]), *[str(r[b]) for b in by], str(int(r["n"])), str(int(r["correct"])),
                 _pct(r["accuracy"]), f"{_pct(r['ci_low'])} – {_pct(r['ci_high'])}", *[_pct(r[c]) for c in extra]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    extra = [c for c in t.columns if c not in ("run", *by, "n", "correct", "accuracy", "ci_low", "ci_high")]
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
            cells += [str(int(s["n"])), str(int(s["correct"])), _pct(s["accuracy"]),
                      f"{_pct(s['ci_low'])}–{_pct(s['ci_high'])}", *[_pct(s[c]) for c in extra]]
        table.add_row(*map(Text, label), *map(Text, cells), style="bold" if "all" in label else None)
    return table


def heatmap(t: pd.DataFrame, by: list[str], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'workbench[plot]'") from None
    if len(by) != 2:
        raise UserError("--plot draws a heatmap of two bucket columns: pass --by A,B (e.g. a_digits,b_digits)")
    runs = list(dict.fromkeys(t["run"]))
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4.2), squeeze=False)
    for ax, r in zip(axes[0], runs):
        sel = t[(t["run"] == r) & (t[by[0]] != "all") & (t[by[1]] != "all")]
        grid = sel.pivot(index=by[0], columns=by[1], values="accuracy")
        grid = grid.loc[sorted(grid.index, key=float), sorted(grid.columns, key=float)]
        im = ax.imshow(grid.values * 100, vmin=0, vmax=100, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(grid.columns)), grid.columns)
        ax.set_yticks(range(len(grid.index)), grid.index)
        ax.set_xlabel(by[1])
        ax.set_ylabel(by[0])
        ax.set_title(Path(r).name)
        for (i, j), v in np.ndenumerate(grid.values):
            ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
        fig.colorbar(im, ax=ax, label="accuracy %")
    fig.tight_layout()
    buf = io.BytesIO()  # rendered in memory, then written atomically like every other output
    try:
        fig.savefig(buf, dpi=120, format=path.suffix.lstrip(".").lower() or "png")
    except ValueError as e:  # an unknown image format
        raise UserError(f"--plot {path}: {e}") from None
    finally:
        plt.close(fig)
    write_output(path, buf.getvalue(), "--plot")


# ---- show ------------------------------------------------------------------------------------

def show_task(name: str, sets: list[str], n: int, split: str, seed: int, include: list[str],
              preset_task: dict[str, Any] | None = None) -> None:
    from experiments.runs import build_task
    from tasks.encode import to_xy

    if n <= 0:
        raise UserError(f"-n must be positive, got {n}")
    over = parse_sets(sets)
    if over["model"] or over["train"]:
        raise UserError("show accepts only task.* overrides in --set")
    task = build_task(name, {**(preset_task or {}), **over["task"]}, include)
    if split not in task.splits:
        raise UserError(f"task {name!r} has no split {split!r}; it has {', '.join(task.splits)}")
    console = stdout_console()
    console.print(Text.assemble((name, "bold"), f"  vocab {task.vocab.chars!r} ({len(task.vocab)} tokens)"))
    if task.kind == "text":
        x, y = task.batch(seed, split, 0, 0, n, 48)
        for row_x, row_y in zip(x, y):
            _print_alignment(console, [task.vocab.chars[i] for i in row_x], [task.vocab.chars[i] for i in row_y])
        return
    problems = task.problems(np.random.default_rng(seed), n, split)
    r = task.render(problems)
    x, y = to_xy(r, task.vocab, task.mask_prompt)
    answers = task.solve(problems)
    for i in range(len(r)):
        meta = ", ".join(f"{b}={problems[b][i]}" for b in task.buckets)
        # Text, not markup: prompts and traces hold brackets ("[34*6=204,...]") that are not tags
        console.print(Text.assemble("\n", (r.prompt(i), "bold"), (r.target(i), "green"),
                                    f"$   answer {answers[i]}" + (f"  ({meta})" if meta else "")), highlight=False)
        length = int(r.length[i]) - 1
        xs = [task.vocab.chars[t] for t in x[i, :length]]
        ys = [task.vocab.chars[t] if t >= 0 else "·" for t in y[i, :length]]
        _print_alignment(console, xs, ys)


def _print_alignment(console: Console, xs: list[str], ys: list[str]) -> None:
    vis = lambda c: {"\n": "⏎", " ": "␣"}.get(c, c)  # noqa: E731
    console.print("  input  " + " ".join(vis(c) for c in xs), highlight=False, markup=False)
    console.print("  target " + " ".join(vis(c) for c in ys), highlight=False, markup=False)


# ---- tasks -----------------------------------------------------------------------------------

def describe_task(cls) -> dict[str, Any]:
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
    import tasks as registry
    from experiments.runs import task_class

    _check_list_format(fmt)
    try:
        for path in include:
            registry.include_file(path)
        known = registry.available()
    except (registry.TaskNotFound, registry.TaskLoadError) as e:
        raise UserError(str(e)) from None
    rows: list[dict[str, Any]] = []
    for name in sorted(known):
        origin = known[name][0]
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

def describe_preset(p) -> dict[str, Any]:
    return {
        "name": p.name,
        "description": p.description,
        "tasks": list(p.tasks),
        "task": p.task_overrides(),
        "model": dataclasses.asdict(p.model),
        "train": dataclasses.asdict(p.train),
        "target_acc": p.target_acc,
    }


def list_presets(fmt: str = "table") -> None:
    """`workbench presets`: two plain lines per preset (never folded, so grep finds them), or
    with fmt "json" one JSON list of {name, description, tasks, task, model, train, target_acc}."""
    _check_list_format(fmt)
    if fmt == "json":
        _print_json([describe_preset(p) for p in PRESETS.values()])
        return
    for p in PRESETS.values():
        m, t = p.model, p.train
        print(f"{p.name:12s} {p.description}")
        print(f"{'':12s} model {m.n_layer}L {m.n_head}H {m.n_embd}d block {m.block_size}; "
              f"{t.steps} steps x batch {t.batch_size}, lr {t.lr}" + (f"; for {', '.join(p.tasks)}" if p.tasks else ""))
