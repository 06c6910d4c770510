"""A run's curriculum settings, checked where the workbench builds or reads a run (runspec.py).

    train.curriculum = off | auto      train.curriculum_threshold in (0, 1]      train.curriculum_replay in [0, 1)

The fields stay in gpt's TrainConfig, so that `--set train.curriculum=auto` and config.json's
train section read as they always did (old run folders load and resume unchanged).  gpt/ never
reads them, though: the workbench runs the curriculum (experiments/curriculum.py), so it checks
them.  This module is apart from curriculum.py, and imports no torch, because runspec.py calls
it and curriculum.py's evals import the modules that import runspec.py (an import cycle).
"""

from __future__ import annotations

from gpt.config import TrainConfig

CURRICULA = ("off", "auto")


def check_curriculum(train: TrainConfig) -> None:
    """ValueError, naming the field, for curriculum settings no run can have (as TrainConfig's own checks)."""
    if train.curriculum not in CURRICULA:
        raise ValueError(f"train.curriculum must be one of {', '.join(CURRICULA)}, got {train.curriculum!r}")
    if not 0 < train.curriculum_threshold <= 1:
        raise ValueError(f"train.curriculum_threshold must be in (0, 1], got {train.curriculum_threshold!r}")
    if not 0 <= train.curriculum_replay < 1:
        raise ValueError(f"train.curriculum_replay must be in [0, 1), got {train.curriculum_replay!r}")
