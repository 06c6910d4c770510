"""From a RunSpec to the objects a run is made of: its task and its model config.

Every command that needs a run's task or model (train and resume, load_run, bench, show, check,
ask, eval, --init-from) builds them here, so they all build the same thing from the same spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from experiments.errors import UserError
from experiments.registry import check_buckets, task_class
from experiments.runspec import RunSpec
from gpt.model import GPTConfig
from gpt.config import GIVEN, RELATIVE, SLOTTED
from tasks.base import Task
from tasks.encode import Rendered
from tasks.positions import PositionIds, check_max_pos


@dataclass(frozen=True)
class Built:
    task: Task
    model: GPTConfig  # fitted to the task: its vocabulary, a block that fits


def build_task(spec: RunSpec) -> Task:
    """The spec's task, configured; a task that cannot start (missing data, a bad option) is a user error."""
    cls = task_class(spec.task, spec.include)
    try:
        task = cls(spec.task_config)
        check_buckets(task)  # buckets an option names (rg:NAME's) are known only now
    except ValueError as e:  # tasks.data.DataError included
        raise UserError(str(e)) from None
    return task


def fit_model(task: Task, model: GPTConfig) -> GPTConfig:
    """The model config fitted to the task: its vocabulary, and a block the task says it fits."""
    cfg = dataclasses.replace(model, vocab_size=len(task.vocab))
    try:
        task.check_block_size(cfg.block_size)
        ids = position_ids(cfg)
        if ids is not None:  # the task numbers its tokens; the model must embed every id it trains
            slots = task.position_scheme(ids.scheme).slots
            if slots and cfg.pos not in SLOTTED:
                raise ValueError(f"task {task.name!r} puts tokens in fixed position slots, which model.pos={cfg.pos} "
                                 f"does not embed; use model.pos={' or '.join(SLOTTED)}")
            cfg = dataclasses.replace(cfg, pos_slots=slots)
            r = task.render(task.problems(np.random.default_rng(0), 512, "train"))
            check_max_pos(int(task.position_ids(r, ids.scheme).max(initial=0)), cfg.max_pos, "a training problem")
    except ValueError as e:
        raise UserError(str(e)) from None
    return cfg


def position_ids(model: GPTConfig) -> PositionIds | None:
    """What the model's batches carry beside the tokens: position ids (model.pos=abacus|coupled), or nothing."""
    return PositionIds(GIVEN[model.pos], model.max_pos) if model.pos in GIVEN else None


def build(spec: RunSpec) -> Built:
    task = build_task(spec)
    return Built(task, fit_model(task, spec.model))


def rendered_positions(task: Task, model: GPTConfig, r: Rendered) -> np.ndarray | None:
    """The (N, W) position ids of r's characters that the model takes, or None for a model that takes none."""
    ids = position_ids(model)
    if ids is None:
        return None
    try:
        full = task.position_ids(r, ids.scheme)
        if model.pos not in RELATIVE:  # a relative bias has no table to run past: it reads differences
            check_max_pos(int(full.max(initial=0)), model.max_pos, "these problems")
    except ValueError as e:
        raise UserError(str(e)) from None
    return full


def decode_positions(task: Task, model: GPTConfig, r: Rendered) -> tuple[list[np.ndarray] | None, np.ndarray | None]:
    """For decoding r's prompts: each prompt's position ids, and per token how it continues the
    last id ((V, 2) keep and add, gpt.generate.next_position); (None, None) for a model that
    takes no ids."""
    full = rendered_positions(task, model, r)
    if full is None:
        return None, None
    counts = np.array(task.position_scheme(GIVEN[model.pos]).token_rules(task.vocab.chars), dtype=np.int64)
    return [row[:n] for row, n in zip(full, r.prompt_len)], counts
