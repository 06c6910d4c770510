"""Task classes by name: the registry, --include files and the task contract, as user errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tasks as task_registry
from experiments.errors import UserError, optional_module
from tasks.base import Task, check_contract

# Columns the workbench's own tables use: a scored problem's row (experiments/evaluate.py), an eval
# table's row, and a grid's results.csv/results.md.  A bucket column of the same name would
# overwrite one, or be read as one, without a word.
RESULT_COLUMNS = frozenset({
    "prompt", "expected", "got", "correct", "trace_valid",  # a scored problem
    "run", "bucket", "split", "n", "accuracy", "ci_low", "ci_high", "baseline", "loss", "ppl", "tokens",  # eval
    "variant", "seed", "status", "error", "wall_s", "steps", "train_time", "val_loss", "best_val_loss",  # grid
})


def include_all(include: Sequence[str], sha256: Sequence[str | None] = ()) -> None:
    """Import --include files (each of a known hash, where given); two of them defining one
    task name is an error."""
    seen: dict[str, str] = {}
    for path, want in zip(include, [*sha256, *[None] * (len(include) - len(sha256))]):
        for name in task_registry.include_file(path, want):
            if name in seen and seen[name] != str(path):
                raise task_registry.TaskLoadError(f"two included tasks are named {name!r}: {seen[name]} and {path}")
            seen[name] = str(path)


def task_class(name: str, include: Sequence[str] = (), sha256: Sequence[str | None] = ()) -> type[Task]:
    """The task class called `name`, after importing the --include files (each of a known hash,
    where given: nothing else runs); checked against the contract."""
    if name.startswith(task_registry.RG_PREFIX):  # the extra it needs, in one line, before its import fails
        optional_module("reasoning_gym", "rg", f"task {name!r}", "reasoning-gym")
    try:
        include_all(include, sha256)
        cls = task_registry.get_task_class(name)
        check_contract(cls)
        check_buckets(cls)
        return cls
    except (task_registry.TaskNotFound, task_registry.TaskLoadError, ValueError) as e:
        raise UserError(str(e)) from None
    except TypeError as e:  # the class does not meet the Task contract
        raise UserError(f"task {name!r} does not meet the task contract: {e}") from None


def check_buckets(cls: type[Task] | Task) -> None:
    """ValueError for a bucket named as a result column; a task whose config names its buckets
    (rg:NAME) is checked as built (experiments/build.py)."""
    clash = [b for b in cls.buckets if b in RESULT_COLUMNS]
    if clash:
        raise ValueError(f"task {cls.name!r} has a bucket column named {clash[0]!r}, a column the workbench's "
                         f"result tables use themselves; rename it (taken: {', '.join(sorted(RESULT_COLUMNS))})")


def known_tasks(include: Sequence[str] = ()) -> dict[str, str]:
    """name -> origin (built-in, plugin, include) of every task, after importing the --include files."""
    try:
        include_all(include)
        return {name: origin for name, (origin, _) in task_registry.available().items()}
    except (task_registry.TaskNotFound, task_registry.TaskLoadError) as e:
        raise UserError(str(e)) from None


def origin_of(name: str) -> str:
    if name.startswith(task_registry.RG_PREFIX):
        return "reasoning-gym"
    known = task_registry.available()
    return known[name][0] if name in known else "include"


def include_hashes(include: Sequence[str]) -> dict[str, str]:
    """Each --include file's path (as config.json records it) -> sha256 of the source that ran."""
    out = {}
    for p in include:
        if task_registry.included_sha256(p) is None:  # task_class has normally loaded it already
            try:
                task_registry.include_file(p)
            except (task_registry.TaskNotFound, task_registry.TaskLoadError) as e:
                raise UserError(str(e)) from None
        out[str(Path(p).resolve())] = task_registry.included_sha256(p)
    return out


def file_sha256(path: str) -> str:
    return task_registry.file_sha256(path)


def included_source(path: str) -> bytes:
    """The bytes this process executed for an --include file (loaded first if it was not)."""
    include_hashes([path])
    return task_registry.included_source(path)
