"""PNG plots: learning curves, accuracy heatmaps (`report` and `eval --plot`), metric vs a grid key.

matplotlib is optional (`pip install 'workbench[plot]'`); without it the report has
its tables and says that plots were skipped.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.tables import bucket_order
from gpt.atomic import atomic_write_bytes


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def curves_image(series: dict[str, list[pd.Series]], ylabel: str, log_y: bool = False) -> bytes | None:
    """A PNG of learning curves, a value against the step: one colour per name, a thin line per
    series (a seed), a thick mean over them; None without matplotlib or series."""
    plt = pyplot()
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, runs) in enumerate(series.items()):
        c = colours[i % len(colours)]
        for s in runs:
            ax.plot(s.index, s.values, color=c, alpha=0.25, lw=0.8)
        mean = pd.concat(runs, axis=1).mean(axis=1)
        ax.plot(mean.index, mean.values, color=c, lw=2, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _image(plt, fig)


def heatmap_image(panels: list[tuple[str, pd.DataFrame]], by: tuple[str, str], title: str = "",
                  fmt: str = "png") -> bytes | None:
    """An image (PNG unless fmt says otherwise; ValueError for a format matplotlib lacks) of accuracy heatmaps, one panel per (name, table) over two bucket columns
    (mean where a cell has several rows, e.g. seeds); None without matplotlib.

    `workbench eval --plot` draws one panel per run, `workbench report` one per variant."""
    plt = pyplot()
    if plt is None or not panels:
        return None
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    im = None
    for ax, (name, table) in zip(axes.flat, panels):
        sel = table[(table[by[0]] != "all") & (table[by[1]] != "all")]
        grid = sel.pivot_table(index=by[0], columns=by[1], values="accuracy", aggfunc="mean")
        grid = grid.loc[sorted(grid.index, key=bucket_order), sorted(grid.columns, key=bucket_order)]
        im = ax.imshow(grid.values * 100, vmin=0, vmax=100, cmap="viridis", origin="lower")
        step = max(1, len(grid.columns) // 10)
        ax.set_xticks(range(0, len(grid.columns), step), grid.columns[::step])
        ax.set_yticks(range(0, len(grid.index), step), grid.index[::step])
        ax.set_xlabel(by[1])
        ax.set_ylabel(by[0])
        ax.set_title(name, fontsize=8)
        if grid.size <= 100:  # the figures themselves, while they still fit in their cells
            for (i, j), val in np.ndenumerate(grid.values):
                if val == val:
                    ax.text(j, i, f"{100 * val:.0f}", ha="center", va="center", fontsize=6,
                            color="w" if val < 0.6 else "k")
    fig.colorbar(im, ax=axes, label="accuracy %", shrink=0.8)
    if title:
        fig.suptitle(title)
    return _image(plt, fig, fmt)


def lines_image(panels: list[tuple[str, pd.DataFrame]], by: str, title: str = "", fmt: str = "png") -> bytes | None:
    """An image of accuracy against one bucket column (e.g. operand length), one line per (name,
    table), with the 95% interval shaded; None without matplotlib.  A numeric column gets a
    numeric axis, so gaps in it stay gaps."""
    plt = pyplot()
    if plt is None or not panels:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, table in panels:
        sel = table[table[by] != "all"]
        sel = sel.iloc[sorted(range(len(sel)), key=lambda i: bucket_order(sel[by].iloc[i]))]
        x = pd.to_numeric(sel[by], errors="coerce")
        xs = x.to_numpy() if x.notna().all() else np.arange(len(sel))
        ax.plot(xs, sel["accuracy"] * 100, marker="o", ms=3, label=name)
        if "ci_low" in sel:
            ax.fill_between(xs, sel["ci_low"] * 100, sel["ci_high"] * 100, alpha=0.15)
        if not x.notna().all():
            ax.set_xticks(xs, sel[by].astype(str))
    ax.set_xlabel(by)
    ax.set_ylabel("accuracy %")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _image(plt, fig, fmt)


def metric_vs(df: pd.DataFrame, x: str, metric: str, path: Path) -> bool:
    """metric (mean ± std over seeds) against grid key x, one line per other grid setting."""
    plt = pyplot()
    ok = df[(df["status"] == "done")] if "status" in df else df
    if plt is None or x not in ok.columns or metric not in ok.columns or ok[metric].isna().all():
        return False
    ok = ok[ok[x].notna()]  # variants without the key (e.g. another part of the grid) are not on this plot
    others = [c for c in ok.columns if "." in c and c not in (x, metric) and c.split(".")[0] in ("task", "model", "train")
              and ok[c].notna().any()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = ok.groupby(others, dropna=False) if others else [((), ok)]
    for label, g in groups:
        stats = g.groupby(x)[metric].agg(["mean", "std"]).sort_index()
        name = ", ".join(f"{o.split('.', 1)[1]}={v}" for o, v in zip(others, label if isinstance(label, tuple) else (label,)))
        ax.errorbar(stats.index.astype(float), stats["mean"], yerr=stats["std"].fillna(0), marker="o",
                    capsize=3, label=name or metric)
    ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_bytes(path, _image(plt, fig))
    return True


def _image(plt, fig, fmt: str = "png") -> bytes:
    """The figure's image bytes, rendered in memory so that it is written atomically."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format=fmt)
    finally:
        plt.close(fig)
    return buf.getvalue()
