"""The layers: gpt/ knows no tasks, tasks/ knows no torch, and experiments/ has no import cycle.

Every import counts, function-level ones included: an import hidden in a function is still a
dependency, and hiding one is how a cycle gets in.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import ROOT

PACKAGES = ("gpt", "tasks", "experiments")
_NAMED = re.compile(r"(gpt|tasks|experiments)(\.\w+)+")
# imports put off on purpose, each where start-up time is the point: `workbench --help`, `tasks` and
# `presets` must not pay for torch (experiments/cli.py loads each command's module when it runs)
LAZY = {"experiments/__init__.py": ["experiments.load"], "experiments/cli.py": ["gpt.distributed"]}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth, as a dotted name (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAMED.fullmatch(node.value):
            found.add(node.value)  # a module imported by name (importlib, the CLI's command table)
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_gpt_knows_no_tasks_or_experiments():
    graph = _graph()
    bad = {(m, d) for m, deps in graph.items() if m.startswith("gpt") for d in deps
           if d.split(".")[0] in ("tasks", "experiments")}
    assert not bad


def test_tasks_know_no_torch_gpt_or_experiments():
    bad = set()
    for path in (ROOT / "tasks").rglob("*.py"):
        for m in _imports(path):
            if m.split(".")[0] in ("torch", "gpt", "experiments"):
                bad.add((_module_name(path), m))
    assert not bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_experiments_has_no_import_cycle():
    graph = _graph()
    sub = {m: {d for d in deps if d.startswith("experiments")} for m, deps in graph.items()
           if m.startswith("experiments")}
    assert _cycles(sub) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check can fail: a planted cycle is found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    assert "experiments.commands.train" in graph["experiments.commands"]  # named in the command table
    graph["gpt.model"] = graph["gpt.model"] | {"tasks.base"}
    bad = {(m, d) for m, deps in graph.items() if m.startswith("gpt") for d in deps if d.startswith("tasks")}
    assert bad == {("gpt.model", "tasks.base")}


def _function_level_imports(path: Path) -> list[str]:
    """The project's own modules that `path` imports inside a function (or a method)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append("." * node.level + (node.module or ""))
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
                      and node.args and isinstance(node.args[0], ast.Constant)):
                    found.append(str(node.args[0].value))
    return [m for m in found if m.startswith(".") or m.split(".")[0] in PACKAGES]


def test_no_function_level_imports_of_the_project_s_own_modules():
    """A module's dependencies are at its top, where they can be read: an import hidden in a
    function is how a cycle hides.  The few put off for start-up time are listed in LAZY (and the
    cycle check above counts them, as it counts the CLI's command table)."""
    hidden = {str(p.relative_to(ROOT)): _function_level_imports(p)
              for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert {p: ms for p, ms in hidden.items() if ms} == LAZY


def test_the_layering_checks_see_function_level_imports(tmp_path):
    """The check above finds imports inside functions and methods (the fault it guards against)."""
    f = tmp_path / "m.py"
    f.write_text("import os\ndef f():\n    from experiments.cli import main\n    import numpy\n"
                 "class C:\n    def m(self):\n        import gpt.model\n        from . import sibling\n"
                 "def g():\n    return importlib.import_module('tasks.text')\n")
    assert sorted(_function_level_imports(f)) == [".", "experiments.cli", "gpt.model", "tasks.text"]


# experiments/sweep is the runner of `workbench run` and `report`: their command module uses it, and
# the CLI holds the lifeline each of its subprocesses ties to the runner; nothing else does.
SWEEP = "experiments.sweep"
SWEEP_USERS = {"experiments.commands.sweep": None, "experiments.cli": {SWEEP, f"{SWEEP}.lifeline"}}
CLI_MODULES = ("experiments.cli", "experiments.commands", "typer", "click")


def _in_sweep(module: str) -> bool:
    return module == SWEEP or module.startswith(SWEEP + ".")


def _sweep_breaches(graph: dict[str, set[str]], imports: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs that cross the sweep package's boundary: a module outside it
    (and outside SWEEP_USERS, or beyond what its entry allows) importing it, or a module in it
    importing a command-line module."""
    bad = set()
    for m, deps in graph.items():
        if _in_sweep(m):
            continue
        allowed = SWEEP_USERS.get(m, set())
        bad |= {(m, d) for d in deps if _in_sweep(d) and allowed is not None and d not in allowed}
    for m, deps in imports.items():
        if _in_sweep(m):
            bad |= {(m, d) for d in deps if any(d == c or d.startswith(c + ".") for c in CLI_MODULES)}
    return bad


def _all_imports() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def test_the_sweep_package_is_used_only_by_its_commands_and_uses_no_cli():
    assert _sweep_breaches(_graph(), _all_imports()) == set()


def test_the_sweep_boundary_check_can_fail():
    """Planted breaches are found: the report's plots importing the runner, the CLI importing more
    than the lifeline, and the runner importing the CLI or typer."""
    graph, imports = _graph(), _all_imports()
    graph["experiments.plots"] = graph["experiments.plots"] | {f"{SWEEP}.grid"}
    graph["experiments.cli"] = graph["experiments.cli"] | {f"{SWEEP}.runjob"}
    imports[f"{SWEEP}.grid"] = imports[f"{SWEEP}.grid"] | {"experiments.commands.options", "typer"}
    assert _sweep_breaches(graph, imports) == {
        ("experiments.plots", f"{SWEEP}.grid"), ("experiments.cli", f"{SWEEP}.runjob"),
        (f"{SWEEP}.grid", "experiments.commands.options"), (f"{SWEEP}.grid", "typer")}
