"""Experiment specs: `workbench run` trains every variant x seed, `workbench report` rebuilds the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from experiments.commands.options import user_errors
from experiments.errors import UserError, check_count
from experiments.outputs import refuse_protected
from experiments.sweep.executors import Placement, check_placement, make_executor, parse_gpus
from experiments.sweep.grid import run_grid
from experiments.sweep.results import build_report
from experiments.sweep.specfile import load_spec, validate_against_registry
from experiments.trackers import check_sinks

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command("run")
@user_errors
def run_cmd(
    spec_file: Path = typer.Argument(..., help="an experiment spec (experiments/specs/*.toml)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output directory (default runs/spec-NAME)"),
    only: Optional[str] = typer.Option(None, "--only", help="run only this variant (an exact name), or those it prefixes or glob-matches"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the runs and their commands; train nothing"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="local: runs at a time (default: the spec's)"),
    log: list[str] = typer.Option([], "--log", help="each run also logs to tensorboard or wandb, tagged with the spec and variant"),
    executor: str = typer.Option("local", "--executor", help="local (a pool on this machine) | ray (pip install 'workbench[ray]')"),
    address: Optional[str] = typer.Option(None, "--address", help="ray: auto or HOST:PORT of a running cluster (default: a new local instance)"),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="local: GPU indices to share out, e.g. 0,1 (each run sees one)"),
    per_gpu: Optional[int] = typer.Option(None, "--per-gpu", help="runs per GPU (default 1); ray: each run reserves 1/K of a GPU"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds one attempt at a run may take (train and evals); then it is stopped, checkpoint kept"),
    retries: int = typer.Option(0, "--retries", help="retry a failed run this many times (it resumes from its checkpoint)"),
) -> None:
    """Run an experiment spec: every variant x seed (finished ones are skipped), then its report."""
    spec = load_spec(spec_file)
    validate_against_registry(spec)
    if jobs is not None:
        check_count(jobs, "--jobs", 1024)
    if timeout is not None and not 0 < timeout <= 10**7:
        raise UserError(f"--timeout must be a number of seconds above 0, got {timeout:g}")
    if not 0 <= retries <= 100:
        raise UserError(f"--retries must be between 0 and 100, got {retries}")
    placement = check_placement(Placement(executor, jobs, parse_gpus(gpus) if gpus is not None else (), per_gpu,
                                          address))
    root = out or Path("runs") / f"spec-{spec.name}"
    refuse_protected(root / "spec.toml", "--out")  # a spec's folder holds runs; it is never one
    run_grid(spec, root, only=only, dry_run=dry_run, echo=typer.echo, trackers=check_sinks(log),
             executor=lambda: make_executor(placement, spec.jobs), timeout_s=timeout, retries=retries,
             then=lambda: build_report(root, spec, echo=typer.echo))


@app.command()
@user_errors
def report(
    run_dir: Path = typer.Argument(..., help="the output directory of `workbench run`"),
) -> None:
    """Rebuild a spec's tables and plots (results.md, results.csv, *.png) from its finished runs."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory")
    refuse_protected(run_dir / "results.md", "report")  # a run folder is no spec's output folder
    build_report(run_dir, echo=typer.echo)
