"""`workbench eval`'s library: score run directories into one table.

A task says how it is scored (`task.metric`): "accuracy" runs get exact-match accuracy by bucket
with Wilson intervals, "loss" runs (a text corpus) their mean loss on fixed windows.  One table
holds one kind: mixing them is refused.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.errors import UserError
from experiments.evaluate import TooLong, evaluate, evaluate_loss
from experiments.load import Run, load_run
from gpt.progress import duration
from tasks.base import EVAL_CHUNK, Task


@dataclass(frozen=True)
class EvalTable:
    table: pd.DataFrame  # one row per (run, bucket), or per run for loss
    by: list[str]  # the bucket columns (accuracy runs)
    metric: str  # "accuracy" or "loss"


def eval_runs(runs: Sequence[Path], n: int, split: str, by: str | None, task_options: dict[str, Any],
              samples: Sequence[Path | None], plot: bool, batch_size: int, seed: int, checkpoint: str,
              device: str, trust_code: bool = False, include: Sequence[str] = ()) -> EvalTable:
    """Score each run on n problems (or windows) of a split; samples[i] receives run i's rows.
    `include`: task files that define the runs' task instead of the copies they keep."""
    parts: list[tuple[pd.DataFrame, list[str]]] = []
    metrics = set()
    for i, path in enumerate(runs):
        run = load_run(path, device=device, checkpoint=checkpoint, task_overrides=task_options, trust_code=trust_code,
                       include=include)
        score = _SCORERS[run.task.metric]
        t, cols = score(run, path, n=n, split=split, by=by, plot=plot, batch_size=batch_size, seed=seed,
                        samples=samples[i])
        label = str(path) if str(path) not in [x["run"].iloc[0] for x, _ in parts] else f"{path} #{i + 1}"
        t.insert(0, "run", label)
        parts.append((t, cols))
        metrics.add(run.task.metric)
    if len(metrics) > 1:
        raise UserError("evaluate text runs and problem runs separately: one reports loss, the other accuracy")
    return EvalTable(pd.concat([t for t, _ in parts], ignore_index=True), parts[0][1], metrics.pop())


def _score_loss(run: Run, path: Path, n: int, split: str, seed: int, by: str | None, **_: Any
                ) -> tuple[pd.DataFrame, list[str]]:
    """A language-modelling run: the loss on n fixed windows, not accuracy."""
    if split not in ("train", "val"):
        raise UserError(f"run {path} is a text run ({run.task.name}): --split must be train or val")
    if by:  # a text run's windows have no buckets: an ignored --by would read as if it applied
        raise UserError(f"--by {by!r}: run {path} is a text run ({run.task.name}), whose loss has no bucket columns")
    return evaluate_loss(run.model, run.task, split=split, n=n, seed=seed), []


def _score_accuracy(run: Run, path: Path, n: int, split: str, by: str | None, plot: bool, batch_size: int,
                    seed: int, samples: Path | None) -> tuple[pd.DataFrame, list[str]]:
    task = run.task
    if split not in task.splits:
        raise UserError(f"task {task.name!r} has no split {split!r}; it has {', '.join(task.splits)}")
    block = run.model.config.block_size
    try:
        need = task.max_length((split,)) - 1
    except ValueError as e:  # a split the config leaves empty (the calculator's ood at the parser's bounds)
        raise UserError(f"task {task.name!r}'s {split!r} split: {e}") from None
    if need > block:
        raise UserError(_too_long(path, block, split, need))
    cols = _by_columns(task, by)
    if plot and len(cols) not in (1, 2):  # checked before the evaluation, which can take minutes
        raise UserError("--plot draws accuracy against one bucket column (--by a_digits) or a heatmap of two "
                        "(--by a_digits,b_digits)")
    try:
        t = evaluate(run.model, task, split=split, n=n, by=cols, batch_size=batch_size, seed=seed, samples=samples,
                     whole=True, progress=_progress(path, n))
    except TooLong as e:  # a problem longer than max_length's estimate: its answer would be cut, never scored so
        raise UserError(_too_long(path, block, split, e.need)) from None
    except OSError as e:
        if samples is None:
            raise
        raise UserError(f"cannot write --samples {samples}: {e.strerror or e}") from None
    return t, cols


def _progress(path: Path, n: int) -> Callable[[int], None] | None:
    """A line on stderr after each chunk of a long eval (more than one chunk), with the time left."""
    if n <= EVAL_CHUNK:
        return None
    start = time.perf_counter()

    def say(done: int) -> None:
        spent = time.perf_counter() - start
        left = f", about {duration(spent * (n - done) / done)} more" if done < n else ""
        print(f"{path}: scored {done:,} of {n:,} ({duration(spent)}{left})", file=sys.stderr, flush=True)

    return say


def _too_long(path: Path, block: int, split: str, need: int) -> str:
    """The one line that refuses a split whose problems the run's block cannot hold."""
    return (f"run {path} has block_size {block}, but {split!r} problems of this task need {need}; "
            "evaluate shorter problems (--set task.…) or train a longer block")


def _by_columns(task: Task, by: str | None) -> list[str]:
    """--by's columns (the task's default_by without it); UserError naming the ones there are."""
    cols = [c.strip() for c in by.split(",") if c.strip()] if by else list(task.default_by)
    have = f"{', '.join(task.buckets) or 'no buckets'}; and {', '.join(task.fault_buckets)} (each wrong answer's)"
    if by and not cols:
        raise UserError(f"--by {by!r} names no column; task {task.name!r} has {have}")
    unknown = [c for c in cols if c not in (*task.buckets, *task.fault_buckets)]
    if unknown:
        raise UserError(f"--by: unknown column {unknown[0]!r}; task {task.name!r} has {have}")
    return cols


_SCORERS = {"accuracy": _score_accuracy, "loss": _score_loss}
