"""Small pieces: no function in gpt/, tasks/ or experiments/ is longer than a screen (60 lines).

A function is counted from its `def` line (decorators excluded) to its last line, docstring and
comments included; a nested function counts on its own and inside its parent.
"""

import ast
from pathlib import Path

from helpers import ROOT

PACKAGES = ("gpt", "tasks", "experiments")
MOST = 60


def long_functions(path: Path, most: int = MOST) -> list[tuple[str, int]]:
    """(file:line name, lines) of every function in `path` longer than `most` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{n.lineno} {n.name}",
             n.end_lineno - n.lineno + 1)
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > most]


def test_no_function_is_longer_than_a_screen():
    found = [f for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) for f in long_functions(p)]
    assert found == []


def test_the_count_sees_a_long_function_and_a_nested_one(tmp_path):
    """The check can fail: a planted 61-line function is found, and so is a long nested one."""
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    f = tmp_path / "m.py"
    f.write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n\ndef outer():\n    def inner():\n"
                 + "".join(f"        y{i} = {i}\n" for i in range(60)) + "    return inner\n")
    found = dict(long_functions(f))
    assert found == {f"{f}:5 long": 61, f"{f}:68 outer": 63, f"{f}:69 inner": 61}
