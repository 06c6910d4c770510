"""Task registry.

BUILTIN is the one explicit list of built-in tasks ("module:Class", imported
on first use).  Installed packages add tasks through the entry-point group
`workbench.tasks`; they are also loaded lazily, and one that fails to import
does not break the others.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

BUILTIN: dict[str, str] = {
    "addition": "tasks.addition:AdditionTask",
    "calculator": "tasks.calculator:CalculatorTask",
    "multiplication": "tasks.multiplication:MultiplicationTask",
    "copy": "tasks.copy:CopyTask",
    "modular": "tasks.modular:ModularTask",
    "parity": "tasks.parity:ParityTask",
    "reverse": "tasks.reverse:ReverseTask",
    "shakespeare": "tasks.text:ShakespeareTask",
    "sort": "tasks.sort:SortTask",
    "text": "tasks.text:TextTask",
}

ENTRY_POINT_GROUP = "workbench.tasks"


class TaskNotFound(LookupError):
    pass


class TaskLoadError(ImportError):
    pass


def plugin_specs() -> dict[str, str]:
    """name -> "module:attr" for installed plugins."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


_INCLUDED: dict[str, type] = {}  # tasks from --include files, this process only


def available() -> dict[str, tuple[str, str]]:
    """name -> (origin, spec) for every known task.

    Two tasks with one name are an error, whatever their origins."""
    out = {name: ("built-in", spec) for name, spec in BUILTIN.items()}
    for origin, specs in (("plugin", plugin_specs()), ("include", {n: f"<file>:{n}" for n in _INCLUDED})):
        for name, spec in specs.items():
            if name in out and out[name][1] != spec:
                raise TaskLoadError(
                    f"two tasks are named {name!r}: {out[name][0]} {out[name][1]} and {origin} {spec}"
                )
            out[name] = (origin, spec)
    return out


def include_file(path: str | Path) -> list[str]:
    """Import a Python file and register the task classes it defines; returns their names."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TaskNotFound(f"--include file not found: {path}")
    mod_name = f"workbench_include_{abs(hash(str(path)))}"
    if mod_name in sys.modules:
        module = sys.modules[mod_name]
    else:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise TaskLoadError(f"--include {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[mod_name]
            raise TaskLoadError(f"--include {path} failed to import: {type(e).__name__}: {e}") from None
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and obj.__module__ == mod_name and getattr(obj, "name", "")
             and hasattr(obj, "Config")]
    if not found:
        raise TaskNotFound(f"--include {path} defines no task class (a class with name and Config)")
    for cls in found:
        other = _INCLUDED.get(cls.name)
        if other is not None and other is not cls:
            raise TaskLoadError(f"two included tasks are named {cls.name!r}")
        if cls.name in BUILTIN or cls.name in plugin_specs():
            raise TaskLoadError(f"--include {path}: task name {cls.name!r} is already taken")
        _INCLUDED[cls.name] = cls
    return [cls.name for cls in found]


def load_spec(spec: str, name: str = ""):
    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # a broken plugin must not take the others down
        raise TaskLoadError(f"task {name or spec!r} ({spec}) failed to import: {type(e).__name__}: {e}") from None
    return obj


def get_task_class(name: str):
    known = available()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known tasks: {', '.join(sorted(known))}"
        raise TaskNotFound(f"unknown task {name!r}{hint}")
    if name in _INCLUDED:
        return _INCLUDED[name]
    return load_spec(known[name][1], name)
