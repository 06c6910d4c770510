"""Training progress: a rich progress bar on a terminal, one line per eval otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

SHOWN = ("loss", "val_loss", "train_acc", "val_acc", "lr", "tokens_per_s")


def _fmt(key: str, v: Any) -> str:
    if key == "lr":
        return f"lr {v:.2e}"
    if key == "tokens_per_s":
        return f"{v / 1000:.1f}k tok/s"
    if key in ("val_acc", "train_acc"):
        return f"{key} {100 * v:.2f}%"
    return f"{key} {v:.4f}"


class TrainProgress:
    """`update(step, record)` after every step.  mode: 'bar', 'lines' or 'quiet'."""

    def __init__(self, total: int, start: int = 0, mode: str | None = None, title: str = "train"):
        if mode is None:
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.total, self.title = mode, total, title
        self.shown: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        self.console = Console(stderr=True)
        self._bar = None
        if mode == "bar":
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console,
            )
            self._id = self._bar.add_task(title, total=total, completed=start, stats="")
            self._bar.start()

    def update(self, step: int, record: dict[str, Any]) -> None:
        for k in SHOWN:
            if k in record:
                self.shown[k] = record[k]
        stats = "  ".join(_fmt(k, self.shown[k]) for k in SHOWN if k in self.shown)
        if self._bar is not None:
            self._bar.update(self._id, completed=step, stats=stats)
        elif self.mode == "lines" and "val_loss" in record:
            el = time.perf_counter() - self.t0
            print(f"step {step}/{self.total}  {stats}  ({el:.0f}s)", file=sys.stderr, flush=True)

    def print(self, msg: str) -> None:
        if self.mode == "quiet":
            return
        if self._bar is not None:
            self._bar.console.print(msg, highlight=False, markup=False)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
