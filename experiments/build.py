"""From a RunSpec to the objects a run is made of: its task and its model config.

Every command that needs a run's task or model (train and resume, load_run, bench, show, check,
ask, eval, --init-from) builds them here, so they all build the same thing from the same spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from experiments.errors import UserError
from experiments.registry import task_class
from experiments.runspec import RunSpec
from gpt.model import GPTConfig
from tasks.base import Task


@dataclass(frozen=True)
class Built:
    task: Task
    model: GPTConfig  # fitted to the task: its vocabulary, digit ids, a block that fits


def build_task(spec: RunSpec) -> Task:
    """The spec's task, configured; a task that cannot start (missing data, a bad option) is a user error."""
    cls = task_class(spec.task, spec.include)
    try:
        return cls(spec.task_config)
    except ValueError as e:  # tasks.data.DataError included
        raise UserError(str(e)) from None


def fit_model(task: Task, model: GPTConfig) -> GPTConfig:
    """The model config fitted to the task: its vocabulary, and a block the task says it fits."""
    cfg = dataclasses.replace(model, vocab_size=len(task.vocab))
    if cfg.pos == "abacus" and not cfg.abacus_digits:
        # abacus indexes digits within numbers; which tokens are digits is the task's business
        digits = tuple(task.vocab.stoi[c] for c in "0123456789" if c in task.vocab.stoi)
        if not digits:
            raise UserError(f"model.pos=abacus: task {task.name!r} has no digit tokens to index")
        cfg = dataclasses.replace(cfg, abacus_digits=digits)
    try:
        task.check_block_size(cfg.block_size)
    except ValueError as e:
        raise UserError(str(e)) from None
    return cfg


def build(spec: RunSpec) -> Built:
    task = build_task(spec)
    return Built(task, fit_model(task, spec.model))
