"""Task classes by name: the registry, --include files and the task contract, as user errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tasks as task_registry
from experiments.errors import UserError
from tasks.base import Task, check_contract


def task_class(name: str, include: Sequence[str] = ()) -> type[Task]:
    """The task class called `name`, after importing the --include files; checked against the contract."""
    try:
        for path in include:
            task_registry.include_file(path)
        cls = task_registry.get_task_class(name)
        check_contract(cls)
        return cls
    except (task_registry.TaskNotFound, task_registry.TaskLoadError, ValueError) as e:
        raise UserError(str(e)) from None
    except TypeError as e:  # the class does not meet the Task contract
        raise UserError(f"task {name!r} does not meet the task contract: {e}") from None


def known_tasks(include: Sequence[str] = ()) -> dict[str, str]:
    """name -> origin (built-in, plugin, include) of every task, after importing the --include files."""
    try:
        for path in include:
            task_registry.include_file(path)
        return {name: origin for name, (origin, _) in task_registry.available().items()}
    except (task_registry.TaskNotFound, task_registry.TaskLoadError) as e:
        raise UserError(str(e)) from None


def origin_of(name: str) -> str:
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
