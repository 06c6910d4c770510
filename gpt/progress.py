"""Training progress: a rich progress bar on a terminal; otherwise (a log file, a pipe, CI) one
line per eval and one at least every `interval` seconds in between, so that a slow machine is
never silent for long."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

SHOWN = ("level", "loss", "val_loss", "train_acc", "val_acc", "level_acc", "lr", "tokens_per_s")


def _fmt(key: str, v: Any) -> str:
    if key == "lr":
        return f"lr {v:.2e}"
    if key == "tokens_per_s":
        return f"{v / 1000:.1f}k tok/s"
    if key in ("val_acc", "train_acc", "level_acc"):
        return f"{key} {100 * v:.2f}%"
    if key == "level":
        return f"level {v}"
    return f"{key} {v:.4f}"


def duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class TrainProgress:
    """`update(step, record)` after every step.  mode: 'bar', 'lines' or 'quiet'.

    In 'lines' mode a line is printed at every eval and whenever `interval` seconds (of a
    monotonic clock) have passed since the last line; between lines a step costs one clock
    read and one comparison."""

    def __init__(self, total: int, start: int = 0, mode: str | None = None, title: str = "train",
                 interval: float = 30.0, clock: Callable[[], float] = time.monotonic, stop_at: str = ""):
        if mode is None:
            mode = "bar" if sys.stderr.isatty() else "lines"
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.mode, self.total, self.title = mode, total, title
        # a run with a target (stop_at, e.g. "val_acc ≥ 1") usually stops long before `total`: the
        # time left to `total` is then a bound, not an estimate, and the line says so
        self.stop_at = stop_at
        self.interval, self._clock = interval, clock
        self.shown: dict[str, Any] = {}
        self._stats = ""
        self.start = start
        self.t0 = clock()
        self._next_line = self.t0 + interval
        self.console = Console(stderr=True)
        self._bar = None
        if mode == "bar":
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console,
            )
            label = f"{title} (stops at {stop_at})" if stop_at else title
            self._id = self._bar.add_task(label, total=total, completed=start, stats="")
            self._bar.start()

    def update(self, step: int, record: dict[str, Any]) -> None:
        if len(record) > 1:  # most steps log nothing but their number: nothing to reformat
            for k in SHOWN:
                if k in record:
                    self.shown[k] = record[k]
            self._stats = "  ".join(_fmt(k, self.shown[k]) for k in SHOWN if k in self.shown)
        if self._bar is not None:
            self._bar.update(self._id, completed=step, stats=self._stats)
        elif self.mode == "lines":
            now = self._clock()
            if "val_loss" in record or now >= self._next_line:
                self._line(step, now)

    def _line(self, step: int, now: float) -> None:
        el = now - self.t0
        done = step - self.start
        eta = ""
        if 0 < done and step < self.total:
            left = duration(el / done * (self.total - step))
            eta = f", at most {left} more: stops at {self.stop_at}" if self.stop_at else f", ETA {left}"
        print(f"step {step}/{self.total}  {self._stats}  ({duration(el)}{eta})", file=sys.stderr, flush=True)
        self._next_line = now + self.interval

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
