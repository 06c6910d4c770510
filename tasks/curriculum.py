"""A task's levels of difficulty, and the training batches of a curriculum through them.

A task declares its levels with `Task.levels()`: option overrides, from the easiest to the task
as configured (the last level is {}).  A level changes which problems are drawn, never how they
are written: every level's problems are rendered by the task as configured, so a 1-digit sum
at level 0 is padded, reversed and numbered exactly as it will be in the full task.

Worked example, addition with max_digits=3 (AdditionTask.levels):

    level 0   {"max_digits": 1, "min_digits": 1}    "3+4="    -> "7$"
    level 1   {"max_digits": 2, "min_digits": 1}    "35+4="   -> "93$"
    level 2   {}                                    "352+47=" -> "993$"   the task as configured

At level k > 0 a training batch keeps a share `replay` of its problems from the earlier levels
(each one's level uniform over 0 .. k-1), so that what was learned first is not forgotten; the
rest come from level k.  Only training moves through the levels: the other splits are always
the whole task's.  Which level a run is at is the run's state, not the task's: the workbench
moves it up when accuracy on the current level reaches a threshold (experiments/curriculum.py).
Batches stay a pure function of (seed, split, step, micro, level).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tasks.base import Problems, Task
from tasks.positions import PositionIds


def level_tasks(task: Task) -> list[Task]:
    """One task per level, easiest first; ValueError for a task without levels or a bad level."""
    levels = task.levels()
    if not levels:
        raise ValueError(f"task {task.name!r} declares no levels of difficulty, so it has no curriculum; "
                         "train without train.curriculum, or give the task a levels() method")
    fields = {f.name for f in dataclasses.fields(task.config)}
    out = []
    for k, overrides in enumerate(levels):
        if not isinstance(overrides, dict):
            raise ValueError(f"task {task.name!r}: level {k} is {overrides!r}, not a dict of option overrides")
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"task {task.name!r}: level {k} sets unknown options {', '.join(unknown)}")
        try:
            out.append(type(task)(task.config.replace(**overrides)))
        except ValueError as e:
            raise ValueError(f"task {task.name!r}: level {k} ({overrides}) is not a valid config: {e}") from None
    if out[-1].config != task.config:
        raise ValueError(f"task {task.name!r}: the last level must be the task as configured ({{}}), got {levels[-1]}")
    return out


class Curriculum:
    """A task's levels, and batches at one of them with a share `replay` of the earlier levels."""

    def __init__(self, task: Task, replay: float):
        if not 0 <= replay < 1:
            raise ValueError(f"train.curriculum_replay must be in [0, 1), got {replay!r}")
        self.task, self.replay = task, replay
        self.stages = level_tasks(task)
        # the width of the full task's digit and symbol matrices, which its render may read to
        # the end (zero padding): an easier level's narrower matrices are padded to it
        like = task.sample(np.random.default_rng(0), 1, "train")
        self.widths = {k: v.shape[1] for k, v in like.columns.items() if v.ndim == 2}

    def __len__(self) -> int:
        return len(self.stages)

    def problems(self, level: int, rng: np.random.Generator, n: int) -> Problems:
        """n training problems at a level: about `replay` of them from the earlier levels, the
        rest from the level itself."""
        if level == 0 or self.replay == 0:
            return self._widen(self.stages[level].problems(rng, n, "train"))
        early = rng.multinomial(rng.binomial(n, self.replay), np.full(level, 1.0 / level))
        parts = [self.stages[k].problems(rng, int(m), "train") for k, m in enumerate(early) if m]
        parts.append(self.stages[level].problems(rng, n - int(early.sum()), "train"))
        return self._widen(Problems.concat(parts))

    def batch(self, level: int, seed: int, split: str, step: int, micro: int, batch_size: int, block_size: int,
              ids: PositionIds | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Task.batch at a level: the same rng, encoding and position ids, easier problems.  Any
        split but train is the whole task's, whatever the level, so that val_loss means the same
        at every level and in a run without levels."""
        if not 0 <= level < len(self.stages):
            raise ValueError(f"level {level} is outside 0 .. {len(self.stages) - 1}")
        if split != "train":
            return self.task.batch(seed, split, step, micro, batch_size, block_size, ids)
        rng = self.task.rng(seed, split, step, micro)
        probs = self.problems(level, rng, batch_size)
        return self.task.encode_batch(probs, rng, split, block_size, ids)

    def level_problems(self, level: int, seed: int, n: int) -> Problems:
        """n fixed problems of a level's own distribution (its train split: never a test problem
        of the task), ready for the full task to render."""
        return self._widen(next(iter(self.stages[level].eval_problems(seed, "train", n, chunk=n))))

    def _widen(self, p: Problems) -> Problems:
        cols = dict(p.columns)
        for k, w in self.widths.items():
            if cols[k].shape[1] < w:
                cols[k] = np.pad(cols[k], ((0, 0), (0, w - cols[k].shape[1])))
        return Problems(**cols)


def ramp(name: str, hi: int, low: str, low_value: int, start: int = 1) -> list[dict[str, Any]]:
    """Levels that raise option `name` from `start` to hi - 1, with its lower bound `low` kept at
    or below it, then the task as configured:
    ramp("max_digits", 3, "min_digits", 3) == [{"max_digits": 1, "min_digits": 1},
                                               {"max_digits": 2, "min_digits": 2}, {}]."""
    return [{name: v, low: min(low_value, v)} for v in range(start, hi)] + [{}]
