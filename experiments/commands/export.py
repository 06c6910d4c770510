"""`workbench export task|run|adderboard`: a task's problems as a dataset file, a run as a model folder,
or an addition run as one Python file for AdderBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from experiments.adderboard import export_adderboard
from experiments.build import build_task
from experiments.commands.options import DeviceOpt, IncludeOpt, TrustOpt, user_errors
from experiments.errors import UserError, check_count, check_seed
from experiments.export import FORMATS, check_exportable, export_run, export_task, table_format
from experiments.outputs import REPLACES, check_output
from experiments.registry import task_class
from experiments.runspec import resolve_spec, task_sets_only

app = typer.Typer(name="export", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Export a task's problems as a dataset file, a run as a model folder, or an addition run for "
                       "AdderBoard.")


@app.command("task")
@user_errors
def export_task_cmd(
    task: str = typer.Argument(..., help="task name (see `workbench tasks`)"),
    out: Path = typer.Option(..., "--out", "-o", help=f"FILE.jsonl or FILE.parquet (the suffix picks the format); {REPLACES}"),
    sets: list[str] = typer.Option([], "--set", "-s", help="task.KEY=V: a task option"),
    split: str = typer.Option("train", "--split", help="train | test | ood (the task's splits)"),
    n: Optional[int] = typer.Option(None, "--n", help="rows (default 10,000; the whole pool with task.train_size)"),
    seed: int = typer.Option(0, "--seed", help="which problems: rows are a pure function of the options and seed"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="whose task options apply (default: the task's own, as in train)"),
    include: list[str] = IncludeOpt,
) -> None:
    """Write a task's problems, one row each: prompt, completion, answer and the bucket columns."""
    table_format(out)
    check_seed(seed)
    task_sets_only(sets, "export task")
    check_exportable(task_class(task, include))  # a text task is refused before its corpus is loaded
    check_output(out, "--out", tuple(FORMATS))
    spec = resolve_spec(task, preset, sets, include=include)  # the task `workbench train` builds
    t = build_task(spec)
    pool = t.train_size if split == "train" else 0
    rows = check_count((pool or 10_000) if n is None else n, "--n", 10**9)
    done = export_task(t, out, split=split, n=rows, seed=seed, preset=spec.preset)
    typer.echo(f"wrote {out}: {done.rows:,} {split} rows of {task} ({', '.join(done.columns)}) in {done.seconds:.1f}s, "
               f"{done.rows / max(done.seconds, 1e-9):,.0f} rows/s", err=True)  # stderr: --out may be /dev/stdout


@app.command("run")
@user_errors
def export_run_cmd(
    run: Path = typer.Argument(..., help="run directory"),
    out: Path = typer.Option(..., "--out", "-o", help="a new (or empty) folder"),
    checkpoint: str = typer.Option("ckpt.pt", "--checkpoint", help="ckpt.pt (latest) or best.pt"),
    eval_n: int = typer.Option(1000, "--eval-n", help="held-out problems for the model card's eval table (0: none)"),
    batch_size: int = typer.Option(1024, "--batch-size"),
    device: str = DeviceOpt,
    trust_code: bool = TrustOpt,
) -> None:
    """Write a run as model.safetensors, config.json, vocab.json and a README.md model card."""
    if not 0 <= eval_n <= 10**8:
        raise UserError(f"--eval-n must be between 0 and 100,000,000, got {eval_n}")
    check_count(batch_size, "--batch-size", 2**16)
    r = export_run(run, out, checkpoint=checkpoint, eval_n=eval_n, device=device, batch_size=batch_size,
                   trust_code=trust_code)
    typer.echo(f"wrote {out}: model.safetensors, config.json, vocab.json, README.md ({r.task.name}, step {r.step:,}); "
               f"load_run({str(out)!r}) loads it, huggingface_hub.upload_folder uploads it as is")


@app.command("adderboard")
@user_errors
def export_adderboard_cmd(
    run: Path = typer.Argument(..., help="an addition run directory"),
    out: Path = typer.Option(..., "--out", "-o", help="a new FILE.py (an existing file is never replaced)"),
    name: Optional[str] = typer.Option(None, "--name", help='metadata["name"] (default: "workbench RUN")'),
    author: str = typer.Option("workbench", "--author", help='metadata["author"]'),
    checkpoint: str = typer.Option("ckpt.pt", "--checkpoint", help="ckpt.pt (latest) or best.pt"),
    trust_code: bool = TrustOpt,
) -> None:
    """Write an addition run as one Python file that AdderBoard's verify.py takes: build_model() and add(model, a, b),
    the model's code and weights inside, needing only torch."""
    done = export_adderboard(run, out, name=name, author=author, checkpoint=checkpoint, trust_code=trust_code)
    typer.echo(f"wrote {out}: {done.params:,} unique parameters (AdderBoard's count); "
               f"python benchmarks/adderboard_verify.py {out} scores it")
