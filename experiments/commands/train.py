"""`workbench train`: a run from flags, or resumed; `--nproc N` relaunches it under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from experiments.batches import check_workers
from experiments.commands.options import ARGV, DeviceOpt, IncludeOpt, SetOpt, TrustOpt, user_errors
from experiments.errors import UserError, check_seed, check_steps
from experiments.rundir import new_run_dir
from experiments.runspec import RunSpec, check_target_acc, read_run_spec_file, resolve_spec
from experiments.trackers import check_sinks
from experiments.training import TrainOptions, resume_run, start_run

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command("train")
@user_errors
def train_cmd(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="task name (see `workbench tasks`)"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="named config (see `workbench presets`)"),
    sets: list[str] = SetOpt,
    steps: Optional[int] = typer.Option(None, "--steps", help="optimizer steps (overrides the preset)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/TASK-TIMESTAMP)"),
    seed: int = typer.Option(1337, "--seed"),
    device: str = DeviceOpt,
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its checkpoint"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    target_acc: Optional[float] = typer.Option(
        None, "--target-acc", help="stop once val_acc reaches this (0: never; default: the preset's)"),
    include: list[str] = IncludeOpt,
    nproc: int = typer.Option(1, "--nproc", help="data-parallel processes: launches torchrun (DDP) for you"),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="start from this run's weights (fine-tuning); its model shape is used"),
    log: list[str] = typer.Option([], "--log", help="also log every metric to tensorboard or wandb (repeatable)"),
    tags: list[str] = typer.Option([], "--tag", help="KEY=VALUE label for --log's trackers (repeatable)"),
    batch_workers: Optional[int] = typer.Option(
        None, "--batch-workers", help="processes building training batches ahead (default: 0 on a CPU; on a GPU up to 4)"),
    trust_code: bool = TrustOpt,
    run_spec: Optional[Path] = typer.Option(
        None, "--run-spec", hidden=True, help="the run's settings, seed included, as `workbench run` resolved them (a JSON file it writes)"),
) -> None:
    """Train a GPT on a task; resumable, with a run directory of config, metrics and checkpoints."""
    if not 1 <= nproc <= 1024:
        raise UserError(f"--nproc must be between 1 and 1024, got {nproc}")
    check_seed(seed)
    check_steps(steps)
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if nproc > 1 and not under_torchrun:
        launch_torchrun(nproc, out or new_run_dir(task or "run"))
        return
    if under_torchrun and out is None:
        raise UserError("under torchrun pass --out, so that every rank writes to the same run directory")
    check_target_acc(target_acc)  # before torchrun starts, and for --resume, which sets it alone
    bad_tag = next((t for t in tags if not t.partition("=")[0] or "=" not in t), None)
    if bad_tag is not None:
        raise UserError(f"--tag expects KEY=VALUE, got {bad_tag!r}")
    trackers = dict(log=check_sinks(log), tags=tuple(tags), batch_workers=check_workers(batch_workers),
                    trust_code=trust_code)
    if resume:
        if out is None:
            raise UserError("--resume needs --out RUN_DIR")
        resume_run(out, TrainOptions(out=out, device=device, quiet=quiet, **trackers), steps, target_acc)
        return
    if run_spec is not None:
        flags = {"--preset": preset, "--set": sets, "--steps": steps, "--target-acc": target_acc,
                 "--include": include, "--init-from": init_from}
        spec = recorded_spec(run_spec, task, [flag for flag, v in flags.items() if v not in (None, [])])
    elif task is None:
        raise UserError("missing --task; see `workbench tasks` for the list")
    else:
        spec = resolve_spec(task, preset, sets, steps, seed, include, init_from, target_acc)
    start_run(spec, TrainOptions(out=out or new_run_dir(spec.task), device=device, quiet=quiet, **trackers))


def recorded_spec(path: Path, task: str | None, flags: list[str]) -> RunSpec:
    """--run-spec FILE: the RunSpec `workbench run` resolved for this run, trained as it is.  The
    flags that would resolve one are refused beside it, and --task, if given, must be its task."""
    if flags:
        raise UserError(f"--run-spec holds the run's settings; {flags[0]} cannot change them")
    spec = read_run_spec_file(path)
    if task is not None and task != spec.task:
        raise UserError(f"--task {task} but --run-spec {path} is a run of task {spec.task!r}")
    return spec


def launch_torchrun(nproc: int, out: Path) -> None:
    """Re-run this very command under `torchrun --nproc_per_node=N` (PyTorch's own launcher)."""
    args, skip = [], False
    for a in ARGV:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    if "--out" not in args and "-o" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", str(out)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "experiments", *args]
    typer.echo("launching: " + " ".join(cmd[1:]), err=True)
    code = subprocess.call(cmd)
    if code:
        raise typer.Exit(code)
