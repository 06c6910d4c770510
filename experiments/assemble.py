"""Assembling a run: flags, a preset and --set overrides become a RunSpec.

`workbench train`, `bench`, `show` and an experiment spec's validation all come through here, so a
preset means the same thing to each of them. It also holds the checks on the numbers a user types
(seeds, step counts), shared by every command.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments.config import Preset, RunSpec, apply_overrides, default_preset, get_preset, parse_sets
from experiments.errors import UserError
from experiments.finetune import finetune_model
from experiments.runs import task_class

MAX_SEED = 2**63 - 1  # seeds go into numpy's SeedSequence (any size) and config.json; int64 keeps them portable
MAX_STEPS = 10**9
MAX_TOKENS = 1_000_000


def check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be between 0 and 2**63-1, got {seed}")
    return seed


def check_count(n: int, flag: str, most: int) -> int:
    if not 0 < n <= most:
        raise UserError(f"{flag} must be between 1 and {most:,}, got {n}")
    return n


def check_steps(steps: int | None, flag: str = "--steps") -> int | None:
    if steps is not None and not 0 < steps <= MAX_STEPS:
        raise UserError(f"{flag} must be between 1 and {MAX_STEPS:,}, got {steps}")
    return steps


def resolve_preset(task: str, preset: str | None) -> Preset:
    """The named preset (refused if it is meant for other tasks), else the task's default."""
    p = get_preset(preset or default_preset(task))
    if p.tasks and task not in p.tasks and preset:
        raise UserError(f"preset {p.name!r} is for {', '.join(p.tasks)}, not {task!r}")
    return p


def build_spec(task: str, preset: str | None, sets: list[str], steps: int | None, seed: int,
               include: list[str], init_from: Path | None = None) -> RunSpec:
    """A new run's RunSpec: the task's defaults, then the preset's, then --set, then --steps."""
    cls = task_class(task, include)
    p = resolve_preset(task, preset)
    over = parse_sets(sets)
    task_over = {**p.task_overrides(), **over["task"]}
    task_cfg = apply_overrides(cls.Config(), task_over, "task")
    if init_from is not None:  # the shape comes from the run we start from
        model = finetune_model(init_from, over["model"])
    else:
        model = apply_overrides(p.model, over["model"], "model")
    train = p.train
    if check_steps(steps) is not None:
        train = dataclasses.replace(train, steps=steps, lr_decay_steps=0)
    train = apply_overrides(train, over["train"], "train")
    return RunSpec(task=task, task_config=task_cfg, model=model, train=train, seed=seed, preset=p.name,
                   include=tuple(include), init_from=str(Path(init_from).resolve()) if init_from else "")
