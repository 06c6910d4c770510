"""`workbench new-task NAME`: an example task file to make one's own, and its test, from the templates."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from experiments.errors import UserError
from gpt.atomic import atomic_write_text
from tasks import available


def write_task_files(name: str, directory: Path) -> list[Path]:
    """Write DIR/NAME.py (an example task marked TODO(new-task) where yours goes: it trains, and
    `workbench check` fails on the markers) and DIR/test_NAME.py."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UserError(f"task name {name!r} must be lowercase letters, digits and _, starting with a letter")
    if name in available():
        raise UserError(f"a task named {name!r} already exists")
    cls = "".join(part.capitalize() for part in name.split("_"))
    paths = {directory / f"{name}.py": "task.py.txt", directory / f"test_{name}.py": "test_task.py.txt"}
    for path in paths:
        if path.exists():
            raise UserError(f"{path} already exists; not overwriting it")
    directory.mkdir(parents=True, exist_ok=True)
    for path, template in paths.items():
        text = (files("experiments") / "templates" / template).read_text(encoding="utf-8")
        atomic_write_text(path, text.format(name=name, cls=cls, module=name, title=cls))
    return list(paths)
