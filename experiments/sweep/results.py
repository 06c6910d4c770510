"""`workbench report DIR`: tables and plots from a spec's finished runs (no training).

results.csv   one row per (variant, seed): status, the grid values, every metric
results.md    the spec, mean ± std over seeds per variant, the per-seed rows, failures,
              and the bucketed eval tables; links the plots
loss.png      val loss vs step, one line per variant (mean over seeds)
accuracy.png  val_acc vs step, when the task has exact-match evals
heatmap-E.png per-variant accuracy over two bucket columns, for each [[eval]] with by = [A, B]
by-E.png      accuracy against the bucket column, a line per variant, for each [[eval]] with by = [A]
metric-vs-X.png  each metric against report.plot_x (e.g. task.train_size), one line per
              value of the other grid keys
"""

from __future__ import annotations

import json
import math
import shlex
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from experiments import plots
from experiments.errors import UserError, install_hint
from experiments.sweep.grid import json_short, json_type, plan, read_json, read_run_result
from experiments.sweep.specfile import load_spec
from experiments.sweep.spectypes import LOG_METRICS, EvalSpec, Spec, steps_to
from experiments.tables import bucket_order, markdown_table
from gpt.atomic import atomic_write_bytes, atomic_write_text
from gpt.checkpoint import check_metrics, read_metrics

# metrics.jsonl values the report computes with: each must be a number where a record has it
LOG_NUMBERS = ("loss", "train_loss", "val_loss", "train_acc", "val_acc", "train_time")
# eval-E.json columns the report computes with (accuracy and trace_valid are shares, 0 to 1)
EVAL_NUMBERS = ("accuracy", "loss", "trace_valid", "n", "correct", "ci_low", "ci_high", "ppl", "tokens")
EVAL_SHARES = ("accuracy", "trace_valid")


def read_log(path: Path, numbers: Iterable[str] = LOG_NUMBERS) -> list[dict[str, Any]]:
    """A run's metrics.jsonl, every record checked (gpt.checkpoint.check_metrics: a whole-number
    step, numbers where it has any of `numbers`, only a torn last line skipped); anything wrong is
    a UserError naming file:line.  No file: no records.  Every reader of metrics.jsonl in the
    report uses this (curves reads only the runs this has checked)."""
    try:
        return check_metrics(path, tuple(numbers))
    except ValueError as e:
        raise UserError(str(e)) from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def log_metrics(records: list[dict], names: tuple[str, ...]) -> dict[str, float]:
    """Final values from a run's metrics.jsonl, and steps_to:M>=x (NaN if never reached)."""
    evals = [r for r in records if "val_loss" in r]
    last = evals[-1] if evals else {}
    out: dict[str, float] = {}
    for name in names:
        target = steps_to(name)
        if target:
            key, value = target
            hit = next((r["step"] for r in evals if r.get(key, -math.inf) >= value), None)
            out[name] = float(hit) if hit is not None else math.nan
        elif name == "steps":
            out[name] = float(records[-1]["step"]) if records else math.nan
        elif name == "train_time":
            out[name] = next((float(r["train_time"]) for r in reversed(records) if "train_time" in r), math.nan)
        elif name == "best_val_loss":
            out[name] = min((r["val_loss"] for r in evals), default=math.nan)
        elif name in LOG_METRICS:
            out[name] = float(last.get(name, math.nan))
    return out


def read_eval(run: Path, e: EvalSpec) -> pd.DataFrame | None:
    """A run's eval-E.json as a table, checked: a non-empty array of objects (rows) holding
    "accuracy" (then a column for each of the eval's `by`) or "loss", numbers where the report
    computes with them.  None when the run has none; UserError naming the file when it is not
    such a table.  Every reader of eval files in the report uses this."""
    path = run / f"eval-{e.name}.json"
    rows = read_json(path)
    why = None if rows is None else _eval_problem(rows, e.by)
    if why:
        raise UserError(f"{path}: {why}; remove the run's result.json and `workbench run` evaluates it again")
    return None if rows is None else pd.DataFrame(rows)


def _eval_problem(rows: Any, by: tuple[str, ...]) -> str | None:
    if not isinstance(rows, list) or not rows:
        return f"expected a non-empty array of rows, got {json_type(rows) if rows != [] else 'an empty array'}"
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {i + 1} is {json_type(row)}, not an object"
        if "accuracy" not in row and "loss" not in row:
            return f'row {i + 1} has neither "accuracy" nor "loss"'
        missing = [b for b in by if b not in row] if "accuracy" in row else []
        if missing:
            return f"row {i + 1} has no column {missing[0]!r}, which the spec's [[eval]] `by` names"
        bad = next((k for k, v in row.items() if isinstance(v, (dict, list))), None) or next(
            (k for k in EVAL_NUMBERS if k in row and not _is_number(row[k])), None)
        if bad:
            return f'row {i + 1}: "{bad}" must be a number, got {json_short(row[bad])}'
        share = next((k for k in EVAL_SHARES if k in row and not 0 <= row[k] <= 1), None)
        if share:
            return f'row {i + 1}: "{share}" must be between 0 and 1, got {json_short(row[share])}'
    return None


def eval_metrics(run: Path, spec: Spec) -> dict[str, float]:
    out = {}
    for e in spec.evals:
        t = read_eval(run, e)
        if t is None or t.empty:
            continue
        row = t.iloc[-1]  # the 'all' row (or the single loss row)
        for col in ("accuracy", "loss", "trace_valid"):
            if col in t.columns:
                out[f"{e.name}.{col}"] = float(row[col])
    return out


def grid_columns(spec: Spec) -> dict[str, dict[str, Any]]:
    """Each variant's value of every key that some variant's grid or case varies: its own case or
    grid value, else what its `set` (or the base's) fixes, so that a variant which fixes model.pos
    in `set` shows it in the model.pos column instead of a gap. Absent: no `set` fixes it."""
    keys = list(dict.fromkeys(k for v in spec.variants for k, _ in v.params))
    out = {}
    for v in spec.variants:
        # the base's set, then the variant's, then its case or grid values: the last one wins
        sets = dict(v.run.sets)
        out[v.name] = {k: sets[k] for k in keys if k in sets}
    return out


def collect(spec: Spec, root: Path) -> pd.DataFrame:
    """One row per (variant, seed) that has a result."""
    rows = []
    columns = grid_columns(spec)
    keys = list(dict.fromkeys(k for c in columns.values() for k in c))  # every row has them, in one order
    # every number steps_to:M>=x compares, besides the ones the report always reads
    numbers = LOG_NUMBERS + tuple(t[0] for t in map(steps_to, spec.metrics) if t)
    for key in plan(spec):
        run = key.dir(root)
        res = read_run_result(run)
        if res is None:
            continue
        row = {"variant": key.variant.name, "seed": key.seed, "status": res["status"],
               "wall_s": res.get("wall_s", math.nan), "error": res.get("error", "")}
        row.update({k: columns[key.variant.name].get(k, math.nan) for k in keys})
        row.update(log_metrics(read_log(run / "metrics.jsonl", numbers), spec.metrics))
        row.update(eval_metrics(run, spec))
        rows.append(row)
    if not rows:
        raise UserError(f"{root} has no finished runs of spec {spec.name!r} (run `workbench run` first)")
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """mean and std over seeds of each metric, per variant, in the spec's order."""
    ok = df[df["status"] == "done"]
    metrics = [m for m in spec.metrics if m in ok.columns]
    order = [v.name for v in spec.variants if v.name in set(ok["variant"])]
    g = ok.groupby("variant", sort=False)[metrics]
    mean, std, n = g.mean(), g.std(ddof=1), g.size()
    out = pd.DataFrame({"variant": order, "seeds": [int(n[v]) for v in order]})
    for m in metrics:
        out[m] = [mean.loc[v, m] for v in order]
        out[f"{m} std"] = [std.loc[v, m] for v in order]
    return out


_RATES = ("accuracy", "trace_valid", "_acc")  # metrics shown as percentages


def _fmt(metric: str, v: float) -> str:
    if v != v:
        return "—"
    if metric.endswith(_RATES):
        return f"{100 * v:.2f}%"
    if metric.endswith("loss"):
        return f"{v:.4f}"
    if metric == "train_time":
        return f"{v:.0f} s"
    return f"{v:.0f}"


def per_seed_table(df: pd.DataFrame, metrics: list[str]) -> str:
    """One row per run: the metrics formatted, every rate (trace_valid too) as a percentage, a gap as —."""
    cols = [c for c in df.columns if c not in ("error",)]
    rows = [[_fmt(c, r[c]) if isinstance(r[c], float) and (c in metrics or c.endswith(_RATES) or r[c] != r[c])
             else r[c] for c in cols]
            for _, r in df.iterrows()]
    return markdown_table(cols, rows)


def markdown(spec: Spec, df: pd.DataFrame, summary: pd.DataFrame, root: Path, plots: list[str]) -> str:
    metrics = [m for m in spec.metrics if m in summary.columns]
    wall = df["wall_s"].sum()
    sessions = _timing(root)
    elapsed = sum(t["elapsed_s"] for t in sessions)
    how = how_runs(spec, sessions)
    lines = [f"# {spec.name}", "", spec.description, "",
             f"- Stated budget: {spec.budget_minutes:g} min on this machine; `workbench run` took "
             f"{elapsed / 60:.1f} min of wall time ({len(sessions)} invocation(s)); the runs' own wall "
             f"times, evals included, sum to {wall / 60:.1f} min ({how}).",
             f"- Reproduce: {reproduce_commands(spec, root, sessions)}; "
             f"rebuild these tables: `workbench report {root}`.",
             f"- Seeds: {', '.join(map(str, spec.seeds))}. Cells are mean ± std over seeds (std needs two).", "",
             "## Summary", ""]

    def mean_std(r, m: str) -> str:
        mean, std = r[m], r[f"{m} std"]
        return _fmt(m, mean) + ("" if std != std else f" ± {_fmt(m, std).rstrip('%s ')}")

    lines.append(markdown_table(["variant", "seeds", *metrics],
                                [[r["variant"], r["seeds"], *[mean_std(r, m) for m in metrics]]
                                 for _, r in summary.iterrows()]).rstrip("\n"))
    failed = df[df["status"] != "done"]
    if len(failed):
        lines += ["", "## Failed runs", ""] + [f"- {r.variant} seed {r.seed}: {r.error}" for r in failed.itertuples()]
    lines += ["", "## Per-seed rows", "", per_seed_table(df, metrics).rstrip("\n")]
    for e in spec.evals:
        if len(e.by) == 1:
            lines += ["", f"## {e.name}: accuracy by {e.by[0]} (mean over seeds)", "", bucket_table(spec, root, e).rstrip("\n")]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def how_runs(spec: Spec, sessions: list[dict]) -> str:
    """How the invocations of `workbench run` ran the runs: "3 at a time" when they all ran alike,
    else each way with its count of invocations, "3 at a time ×2; 1 at a time ×1" (older
    timing.jsonl files have only a job count)."""
    hows = Counter(t.get("how") or f"{t.get('jobs', spec.jobs)} at a time" for t in sessions)
    if not hows:
        return f"{spec.jobs} at a time"
    if len(hows) == 1:
        return next(iter(hows))
    return "; ".join(f"{how} ×{n}" for how, n in hows.items())


def _timing(root: Path) -> list[dict]:
    """timing.jsonl's records, for the report's header: a line that is not such a record (a torn
    append, bytes from elsewhere) is left out, as a missing file is; no figure depends on it."""
    try:
        lines = (root / "timing.jsonl").read_bytes().splitlines()
    except OSError:
        return []
    out = []
    for raw in lines:
        try:
            t = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            continue
        if _is_session(t):
            out.append(t)
    return out


def _is_session(t: Any) -> bool:
    """A timing.jsonl record with the types the header reads (older ones have "jobs", not "how")."""
    return (isinstance(t, dict) and _is_number(t.get("elapsed_s")) and _is_number(t.get("jobs", 1))
            and all(isinstance(t.get(k), (str, type(None))) for k in ("how", "only")))


def reproduce_commands(spec: Spec, root: Path, sessions: list[dict]) -> str:
    """The `workbench run` command(s) that made root: one per distinct --only, if every invocation had one."""
    onlys = list(dict.fromkeys(t.get("only") for t in sessions))
    if not onlys or None in onlys:
        onlys = [None]
    return " then ".join(f"`workbench run {_source(spec, root)}{f' --only {shlex.quote(o)}' if o else ''} --out {root}`"
                         for o in onlys)


def _source(spec: Spec, root: Path) -> str:
    try:
        return (root / "spec.source").read_text(encoding="utf-8").strip()
    except (OSError, ValueError):  # missing, or not text: the spec's own path says as much
        return str(spec.path)


def curves(spec: Spec, root: Path, key: str) -> dict[str, list[pd.Series]]:
    """key against the step in each finished run's metrics.jsonl, a series per seed, by variant
    (the report has read and checked these runs' records already: read_log)."""
    series: dict[str, list[pd.Series]] = {}
    for k in plan(spec):
        if (read_run_result(k.dir(root)) or {}).get("status") != "done":
            continue
        recs = [r for r in read_metrics(k.dir(root) / "metrics.jsonl") if key in r]
        if recs:
            s = pd.Series([r[key] for r in recs], index=[r["step"] for r in recs])
            series.setdefault(k.variant.name, []).append(s[~s.index.duplicated(keep="last")])
    return series


def bucket_means(spec: Spec, root: Path, e) -> pd.DataFrame:
    """Accuracy per bucket of an eval, mean over each variant's finished seeds."""
    parts = []
    for key in plan(spec):
        t = read_eval(key.dir(root), e)
        if t is None or "accuracy" not in t.columns:
            continue
        if (read_run_result(key.dir(root)) or {}).get("status") != "done":
            continue
        t = t[[*e.by, "accuracy"]].copy()
        t["variant"] = key.variant.name
        parts.append(t)
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts)
    for b in e.by:
        df[b] = df[b].astype(str)
    return df.groupby(["variant", *e.by], sort=False)["accuracy"].mean().reset_index()


def bucket_table(spec: Spec, root: Path, e) -> str:
    t = bucket_means(spec, root, e)
    if t.empty:
        return "(no eval tables)\n"
    wide = t.pivot(index="variant", columns=e.by[0], values="accuracy")
    cols = sorted(wide.columns, key=bucket_order)
    variants = [v.name for v in spec.variants if v.name in wide.index]
    return markdown_table(["variant", *cols], [[v, *[_fmt("accuracy", wide.loc[v, c]) for c in cols]] for v in variants])


def build_report(root: Path, spec: Spec | None = None, echo=print) -> Path:
    """Write results.csv, results.md and the plots under root; returns results.md's path."""
    root = Path(root)
    if spec is None:
        if not (root / "spec.toml").is_file():
            raise UserError(f"{root} has no spec.toml: it is not the output of `workbench run`")
        spec = load_spec(root / "spec.toml")
    df = collect(spec, root)
    summary = summarise(df, spec)
    made: list[str] = []
    for key, name, ylabel, log_y in (("val_loss", "loss.png", "val loss", True),
                                     ("val_acc", "accuracy.png", "val_acc (held-out exact match)", False)):
        image = plots.curves_image(curves(spec, root, key), ylabel, log_y)
        if image is not None:
            atomic_write_bytes(root / name, image)
            made.append(name)
    for group in dict.fromkeys(e.heatmap for e in spec.evals if len(e.by) == 2):
        members = [e for e in spec.evals if e.heatmap == group and len(e.by) == 2]
        by = members[0].by
        parts = [t.rename(columns=dict(zip(e.by, by))) for t, e in ((bucket_means(spec, root, e), e) for e in members)
                 if not t.empty]
        title = f"{' + '.join(f'{e.name} ({e.split})' for e in members)}: accuracy by {by[0]} x {by[1]}"
        table = pd.concat(parts) if parts else pd.DataFrame()
        panels = [(v, table[table["variant"] == v]) for v in dict.fromkeys(table["variant"])] if parts else []
        image = plots.heatmap_image(panels, by, title)
        if image is not None:
            atomic_write_bytes(root / f"heatmap-{group}.png", image)
            made.append(f"heatmap-{group}.png")
    for e in spec.evals:  # one bucket column: accuracy against it, a line per variant
        t = bucket_means(spec, root, e) if len(e.by) == 1 else pd.DataFrame()
        panels = [(v, t[t["variant"] == v]) for v in dict.fromkeys(t["variant"])] if not t.empty else []
        image = plots.lines_image(panels, e.by[0], f"{e.name} ({e.split}): accuracy by {e.by[0]}") if panels else None
        if image is not None:
            atomic_write_bytes(root / f"by-{e.name}.png", image)
            made.append(f"by-{e.name}.png")
    if spec.plot_x:
        for m in spec.metrics:
            name = f"{m.replace(':', '_').replace('>=', '_ge_')}-vs-{spec.plot_x.split('.')[-1]}.png"
            if plots.metric_vs(df, spec.plot_x, m, root / name):
                made.append(name)
    if plots.pyplot() is None:
        echo(f"plots skipped: matplotlib is not installed ({install_hint('plot')})")
    atomic_write_text(root / "results.csv", df.to_csv(index=False))
    atomic_write_text(root / "results.md", markdown(spec, df, summary, root, made))
    echo(f"wrote {root / 'results.md'}, results.csv and {len(made)} plot(s)")
    return root / "results.md"
