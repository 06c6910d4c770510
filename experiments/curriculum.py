"""A run's curriculum: which level of its task it trains at, and when it moves up.

    --set train.curriculum=auto [train.curriculum_threshold=0.99] [train.curriculum_replay=0.2]

The task declares its levels (Task.levels, tasks/curriculum.py); the run starts at level 0 and,
at every eval, scores n fixed problems of the current level (`level_acc`).  When that reaches
the threshold, the next steps train at the next level.

level_acc is scored on the level's own distribution, drawn apart from training's batches, not on
its share of the test split: an easy level can be tiny (1-digit addition has 100 problems, of
which the 5 held out are never trained on), and no model learns 5 unseen sums from 95 seen ones.
Generalisation is what val_acc measures, on the whole task's held-out problems, at every eval.

The level is the trainer's Schedule: logged with every record (`level`), shown in the progress
line, saved in every checkpoint and restored on resume, so a resumed run replays exactly the
batches of an uninterrupted one.  The last level is the task as configured: there the run
trains as it would without a curriculum, and only val_acc is scored.
"""

from __future__ import annotations

from typing import Any

from experiments.curriculum_config import check_curriculum
from experiments.errors import UserError
from experiments.evaluate import EVAL_SEED, accuracy
from gpt.config import TrainConfig
from gpt.model import GPT
from gpt.protocols import EvalFn
from tasks.base import Problems, Task
from tasks.curriculum import Curriculum


LEVEL_N = 1000  # problems per level check when the run scores no held-out problems (bench)


class LevelSchedule:
    """The level a run trains at (gpt.protocols.Schedule), moved up by `evaluate`."""

    def __init__(self, curriculum: Curriculum, threshold: float, n: int):
        self.curriculum, self.threshold, self.n = curriculum, threshold, n
        self.level = 0
        self._problems: dict[int, Problems] = {}

    @property
    def last(self) -> int:
        return len(self.curriculum) - 1

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        level = state.get("level")
        if not isinstance(level, int) or not 0 <= level <= self.last:
            raise ValueError(f"the checkpoint's curriculum level {level!r} is not one of this task's "
                             f"levels 0 .. {self.last}")
        self.level = level

    def fields(self) -> dict[str, Any]:
        return {"level": self.level}

    def problems(self, level: int) -> Problems:
        """The level's fixed eval problems (drawn once, with a seed no batch uses)."""
        if level not in self._problems:
            self._problems[level] = self.curriculum.level_problems(level, EVAL_SEED + 2, self.n)
        return self._problems[level]

    def evaluate(self, model: GPT) -> dict[str, float]:
        """level_acc on the current level, and the move up when it reaches the threshold."""
        if self.level == self.last:
            return {}
        acc = accuracy(model, self.curriculum.task, self.problems(self.level))
        if acc >= self.threshold:
            self.level += 1
        return {"level_acc": acc}


def make_schedule(task: Task, train: TrainConfig, eval_n: int) -> LevelSchedule | None:
    """The run's LevelSchedule for train.curriculum=auto, else None; one clear error when the
    task cannot have one."""
    try:
        check_curriculum(train)  # a RunSpec's are checked (runspec.py); a TrainConfig built elsewhere may not be
    except ValueError as e:
        raise UserError(str(e)) from None
    if train.curriculum == "off":
        return None
    if task.metric != "accuracy":
        raise UserError(f"train.curriculum=auto needs a task scored by accuracy; {task.name!r} is scored by its loss")
    if task.train_size:
        raise UserError("train.curriculum=auto draws fresh problems at each level; it does not combine with "
                        "task.train_size")
    try:
        curriculum = Curriculum(task, train.curriculum_replay)
    except ValueError as e:
        raise UserError(str(e)) from None
    return LevelSchedule(curriculum, train.curriculum_threshold, eval_n if eval_n > 0 else LEVEL_N)


def with_levels(evaluate: EvalFn | None, schedule: LevelSchedule | None) -> EvalFn | None:
    """The run's eval function, with the schedule's level check after it."""
    if schedule is None:
        return evaluate

    def both(model: GPT) -> dict[str, float]:
        out = evaluate(model) if evaluate is not None else {}
        return {**out, **schedule.evaluate(model)}

    return both
