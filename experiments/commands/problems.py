"""A task's problems as `workbench train` would build them: `show` prints them (or, given a run, the run's
model and parameter counts), `check` runs the conformance kit."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import typer
from hypothesis.configuration import set_hypothesis_home_dir

from experiments.build import build_task
from experiments.card import run_summary
from experiments.catalog import print_examples
from experiments.commands.options import IncludeOpt, SetOpt, user_errors
from experiments.errors import UserError, check_count, check_seed
from experiments.registry import task_class
from experiments.runspec import resolve_spec, task_sets_only
from tasks.testing import run_checks

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
@user_errors
def show(
    run: Optional[Path] = typer.Argument(None, help="a run folder: its model and parameter counts instead of problems"),
    task: Optional[str] = typer.Option(None, "--task", "-t"),
    sets: list[str] = SetOpt,
    n: int = typer.Option(5, "-n", "--n"),
    split: str = typer.Option("train", "--split"),
    seed: int = typer.Option(0, "--seed"),
    include: list[str] = IncludeOpt,
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="whose task options apply (default: the task's own, as in train)"),
) -> None:
    """Print sample problems: each input token above its target, masked targets shown as ·; or, given a run, its
    model and parameter counts."""
    if run is not None:
        if task is not None:
            raise UserError("show takes a run folder or --task, not both")
        typer.echo("\n".join(f"{k:<11} {v}" for k, v in run_summary(run)))
        return
    if task is None:
        raise UserError("show needs --task NAME (sample problems) or a run folder (its model and parameters)")
    check_seed(seed)
    check_count(n, "-n", 100_000)
    task_sets_only(sets, "show")
    t = build_task(resolve_spec(task, preset, sets, include=include))  # the task `workbench train` builds
    try:
        examples = t.examples(seed, split, n)
    except ValueError as e:  # a split the task does not have
        raise UserError(str(e)) from None
    print_examples(t, examples)


@app.command()
@user_errors
def check(
    task: str = typer.Option(..., "--task", "-t"),
    sets: list[str] = SetOpt,
    include: list[str] = IncludeOpt,
    examples: int = typer.Option(25, "--examples", help="hypothesis examples per property"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="whose task options apply (default: the task's own, as in train)"),
) -> None:
    """Run the task conformance kit (tasks.testing) on the task config `train` would use; exit 1 if a check fails."""
    check_count(examples, "--examples", 100_000)
    task_sets_only(sets, "check")
    cls = task_class(task, include)
    config = resolve_spec(task, preset, sets, include=include).task_config  # as `workbench train` builds it
    # hypothesis keeps a cache under ./.hypothesis by default: not in the user's folder
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), f"workbench-hypothesis-{os.getuid()}"))
    results = run_checks(cls, config, examples)
    for r in results:
        typer.echo(f"{'ok  ' if r.ok else 'FAIL'}  {r.name}" + (f"\n      {r.detail}" if r.detail else ""))
    failed = sum(not r.ok for r in results)
    typer.echo(f"{task}: {len(results) - failed} of {len(results)} checks passed")
    if failed:
        raise typer.Exit(1)
