"""What the workbench offers: `tasks`, `presets` and `new-task`.

These answer in well under a second: nothing they import loads torch, pandas or matplotlib
(tests/test_cli.py checks, in a fresh process).
"""

from __future__ import annotations

from pathlib import Path

import typer

from experiments.catalog import list_presets, list_tasks
from experiments.commands.options import IncludeOpt, user_errors
from experiments.scaffold import write_task_files

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command("tasks")
@user_errors
def tasks_cmd(include: list[str] = IncludeOpt,
              fmt: str = typer.Option("table", "--format", help="table | json")) -> None:
    """List tasks: origin, description, options with defaults, splits."""
    list_tasks(include, fmt)


@app.command()
@user_errors
def presets(
    fmt: str = typer.Option("table", "--format", help="table | json"),
    everything: bool = typer.Option(False, "--all", help="also the presets kept only so that old figures reproduce"),
) -> None:
    """List named presets (--all: with those kept only to reproduce docs/LOG.md's figures)."""
    list_presets(fmt, archived=everything)


@app.command("new-task")
@user_errors
def new_task(
    name: str = typer.Argument(..., help="task name: lowercase letters, digits and _"),
    directory: Path = typer.Option(Path("."), "--dir", help="where to write NAME.py and test_NAME.py"),
) -> None:
    """Write an example task (string reversal) and its test to make yours: it trains as written, and
    `workbench check` fails until every line marked TODO(new-task) is yours."""
    for path in write_task_files(name, directory):
        typer.echo(f"wrote {path}")
    f = directory / f"{name}.py"
    typer.echo(f"next:  replace each TODO(new-task) in {f} with your task (check names the lines left)\n"
               f"       workbench check --task {name} --include {f}\n"
               f"       workbench train --task {name} --include {f} --steps 500\n"
               f"       python -m pytest {directory / f'test_{name}.py'}   (pytest: pip install pytest)")
