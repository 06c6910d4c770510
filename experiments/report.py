"""What the CLI prints: eval tables, `show` alignments, the task list."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from experiments.config import parse_sets
from experiments.errors import UserError

console = Console()


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
        sample_path = samples if len(runs) == 1 or samples is None else samples.with_suffix(f".{i}{samples.suffix}")
        t = evaluate(run.model, task, split=split, n=n, by=cols, batch_size=batch_size, seed=seed, samples=sample_path)
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
            out.write_text(text, encoding="utf-8")
        return table
    text = render_table(table, cols, fmt)
    if fmt == "table":
        print_rich(table, cols, f"{split} accuracy, n={n}")
    else:
        print(text)
    if out:
        out.write_text(text if fmt != "table" else render_table(table, cols, "markdown"), encoding="utf-8")
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
    """Runs side by side: one row per bucket, one column group per run."""
    runs = list(dict.fromkeys(t["run"]))
    extra = [c for c in t.columns if c not in ("run", *by, "n", "correct", "accuracy", "ci_low", "ci_high")]
    table = Table(title=title)
    for b in by or ["bucket"]:
        table.add_column(b, justify="right")
    for r in runs:
        name = Path(r).name
        table.add_column(f"{name}\nn", justify="right")
        table.add_column(f"{name}\ncorrect", justify="right")
        table.add_column(f"{name}\naccuracy", justify="right")
        table.add_column(f"{name}\n95% CI", justify="right")
        for c in extra:
            table.add_column(f"{name}\n{c}", justify="right")
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
        table.add_row(*label, *cells, style="bold" if "all" in label else None)
    console.print(table)


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
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    console.print(f"[bold]{name}[/bold]  vocab {task.vocab.chars!r} ({len(task.vocab)} tokens)")
    if task.kind == "text":
        x, y = task.batch(seed, split, 0, 0, n, 48)
        for row_x, row_y in zip(x, y):
            _print_alignment([task.vocab.chars[i] for i in row_x], [task.vocab.chars[i] for i in row_y])
        return
    problems = task.problems(np.random.default_rng(seed), n, split)
    r = task.render(problems)
    x, y = to_xy(r, task.vocab, task.mask_prompt)
    answers = task.solve(problems)
    for i in range(len(r)):
        meta = ", ".join(f"{b}={problems[b][i]}" for b in task.buckets)
        console.print(f"\n[bold]{r.prompt(i)}[/bold][green]{r.target(i)}[/green]$   answer {answers[i]}" + (f"  ({meta})" if meta else ""),
                      highlight=False)
        length = int(r.length[i]) - 1
        xs = [task.vocab.chars[t] for t in x[i, :length]]
        ys = [task.vocab.chars[t] if t >= 0 else "·" for t in y[i, :length]]
        _print_alignment(xs, ys)


def _print_alignment(xs: list[str], ys: list[str]) -> None:
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


def list_tasks(include: list[str]) -> None:
    import tasks as registry
    from experiments.runs import task_class

    try:
        for path in include:
            registry.include_file(path)
        known = registry.available()
    except (registry.TaskNotFound, registry.TaskLoadError) as e:
        raise UserError(str(e)) from None
    table = Table(title="tasks", expand=True)
    for col, ratio in (("task", 2), ("origin", 1), ("description", 3), ("options (defaults)", 3), ("splits", 1)):
        table.add_column(col, overflow="fold", ratio=ratio)
    for name in sorted(known):
        origin = known[name][0]
        try:
            cls = task_class(name)
        except UserError as e:
            table.add_row(name, origin, f"[red]{e}[/red]", "", "")
            continue
        d = describe_task(cls)
        opts = "\n".join(f"{k}={v!r}" for k, v in d["options"].items())
        table.add_row(name, origin, cls.description, opts, ", ".join(d["splits"]))
    console.print(table)

