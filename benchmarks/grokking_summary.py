"""The grokking gap of `modular` runs: steps to 99% train and held-out accuracy, and a plot.

    python benchmarks/grokking_summary.py RUN [RUN ...] [--csv FILE] [--plot FILE]

Reads each run's config.json and metrics.jsonl (the eval rows: train_acc on 1000 fixed
training pairs, val_acc on 1000 held-out pairs, every train.eval_interval steps) and prints
a markdown table. --csv keeps the eval rows (small enough to commit, unlike metrics.jsonl);
the plot is accuracy against steps on a log axis, one panel per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def eval_rows(run: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    df = pd.DataFrame([r for r in rows if "val_acc" in r])
    return df[["step", "train_acc", "val_acc", "val_loss"]].assign(run=run.name)


def first_step(df: pd.DataFrame, col: str, level: float = 0.99) -> int | None:
    hit = df.loc[df[col] >= level, "step"]
    return int(hit.iloc[0]) if len(hit) else None


def summary(run: Path, df: pd.DataFrame) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    task, train = cfg["task"]["config"], cfg["train"]
    tr, va = first_step(df, "train_acc"), first_step(df, "val_acc")
    last = df.iloc[-1]
    return {
        "run": run.name, "tokens": task.get("tokens", "digits"), "train_fraction": task["train_fraction"],
        "weight_decay": train["weight_decay"], "train 99%": tr, "held-out 99%": va,
        "gap": (va - tr) if tr is not None and va is not None else None, "steps run": int(last["step"]),
        "final train / held-out": f"{last['train_acc']:.1%} / {last['val_acc']:.1%}",
        "best held-out": f"{df['val_acc'].max():.1%}",
    }


def plot(frames: list[pd.DataFrame], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(frames))
    rows = -(-len(frames) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for ax, df in zip(axes.flat, frames):
        ax.plot(df["step"].clip(lower=1), df["train_acc"], label="train")
        ax.plot(df["step"].clip(lower=1), df["val_acc"], label="held-out")
        ax.set_xscale("log")
        ax.set_title(df["run"].iloc[0], fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(frames):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    frames = [eval_rows(r) for r in args.runs]
    table = pd.DataFrame([summary(r, df) for r, df in zip(args.runs, frames)])
    for col in ("train 99%", "held-out 99%", "gap"):  # "never" stays empty, not NaN
        table[col] = table[col].astype("Int64")
    print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
    if args.csv:
        pd.concat(frames).to_csv(args.csv, index=False)
    if args.plot:
        plot(frames, args.plot)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
