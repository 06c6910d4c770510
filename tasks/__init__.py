"""Task registry.

BUILTIN is the one explicit list of built-in tasks ("module:Class", imported
on first use).  Installed packages add tasks through the entry-point group
`workbench.tasks`; they are also loaded lazily, and one that fails to import
does not break the others.  A name rg:NAME is reasoning-gym's dataset NAME (RG_PREFIX).
"""

from __future__ import annotations

import difflib
import hashlib
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
# rg:NAME is reasoning-gym's dataset NAME (the `rg` extra): tasks/rg_task.py makes its class, one for
# each of reasoning-gym's datasets, so they are not listed here or by available()
RG_PREFIX = "rg:"
RG_TASKS = "tasks.rg_task:task_class"


class TaskNotFound(LookupError):
    pass


class TaskLoadError(ImportError):
    pass


def plugin_specs() -> dict[str, str]:
    """name -> "module:attr" for installed plugins."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


_INCLUDED: dict[str, type] = {}  # tasks from --include files, this process only
_INCLUDED_FROM: dict[str, Path] = {}  # included task name -> the file that defines it
_INCLUDED_SHA: dict[Path, str] = {}  # included file -> sha256 of the source this process executed
_INCLUDED_SOURCE: dict[Path, bytes] = {}  # included file -> the source bytes this process executed


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


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, hex."""
    with open(Path(path).expanduser(), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def included_sha256(path: str | Path) -> str | None:
    """sha256 of the source this process executed for an --include file (None: never included)."""
    return _INCLUDED_SHA.get(Path(path).expanduser().resolve())


def included_source(path: str | Path) -> bytes:
    """The source bytes this process executed for an --include file (a run keeps a copy of them)."""
    return _INCLUDED_SOURCE[Path(path).expanduser().resolve()]


def include_file(path: str | Path, sha256: str | None = None) -> list[str]:
    """Import a Python file and register the task classes it defines; returns their names.

    The source is read once, hashed (a run records the hash, and later refuses a changed
    file) and executed from those very bytes; with `sha256`, bytes of another hash are refused
    before they run.  Including a file again is free while it is unchanged; once it has
    changed, the new version replaces the old one's tasks, as a fresh process would see it.
    A task name defined by another file replaces that file's task too: the latest include wins
    (registry.task_class refuses two files of one command that define one name)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TaskNotFound(f"--include file not found: {path}")
    try:
        source = path.read_bytes()
    except OSError as e:
        raise TaskLoadError(f"--include {path}: cannot read it: {e.strerror}") from None
    sha = hashlib.sha256(source).hexdigest()
    if sha256 is not None and sha != sha256:
        raise TaskLoadError(f"task file {path} changed while it was being loaded (sha256 {sha256[:12]} expected, "
                            f"{sha[:12]} read); nothing was run")
    mod_name = f"workbench_include_{sha[:16]}_{abs(hash(str(path)))}"
    if mod_name in sys.modules:
        module = sys.modules[mod_name]
    else:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise TaskLoadError(f"--include {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # dataclasses look their module up while the file runs
        try:
            exec(compile(source, str(path), "exec"), module.__dict__)
        except Exception as e:
            del sys.modules[mod_name]
            raise TaskLoadError(f"--include {path} failed to import: {type(e).__name__}: {e}") from None
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and obj.__module__ == mod_name and getattr(obj, "name", "")
             and hasattr(obj, "Config")]
    if not found:
        raise TaskNotFound(f"--include {path} defines no task class (a class with name and Config)")
    for cls in found:
        if cls.name in BUILTIN or cls.name in plugin_specs():
            raise TaskLoadError(f"--include {path}: task name {cls.name!r} is already taken")
    for name in [n for n, src in _INCLUDED_FROM.items() if src == path]:  # an earlier version's tasks
        del _INCLUDED[name], _INCLUDED_FROM[name]
    for cls in found:
        _INCLUDED[cls.name] = cls
        _INCLUDED_FROM[cls.name] = path
    _INCLUDED_SHA[path] = sha
    _INCLUDED_SOURCE[path] = source
    return [cls.name for cls in found]


def import_object(spec: str, name: str = ""):
    """The object a "module:attr.path" string names (a task class); TaskLoadError if it fails to import."""
    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # a broken plugin must not take the others down
        raise TaskLoadError(f"task {name or spec!r} ({spec}) failed to import: {type(e).__name__}: {e}") from None
    return obj


def get_task_class(name: str):
    if name.startswith(RG_PREFIX):
        return import_object(RG_TASKS, name)(name.removeprefix(RG_PREFIX))
    known = available()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known tasks: {', '.join(sorted(known))}"
        raise TaskNotFound(f"unknown task {name!r}{hint} (a task in a file of your own loads with --include FILE.py)")
    if name in _INCLUDED:
        return _INCLUDED[name]
    return import_object(known[name][1], name)
