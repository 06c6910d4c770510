"""The `workbench` command line (typer).

Exit codes: 0 success; 1 a failure the tool reports (a failed check, a failed run) or an internal
error; 2 a user error. A user error ends in one line on stderr, `error: ...`. An error the code does
not expect ends in one line too, `internal error: ...`; `WORKBENCH_DEBUG=1` shows its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import torch
import typer
from hypothesis.configuration import set_hypothesis_home_dir

try:  # recent typer vendors click as typer._click; older ones use click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    import click.exceptions as click_exc

from experiments import lifeline
from experiments.ask import ask as ask_run
from experiments.ask import format_answer
from experiments.attention import attention_command
from experiments.bench import bench as run_bench
from experiments.batches import check_workers
from experiments.bench import format_result, json_dumps
from experiments.build import build_task
from experiments.display import check_plot_path, eval_plot, format_eval, list_presets, list_tasks, print_eval, print_examples
from experiments.errors import MAX_TOKENS, USER_ERRNOS, UserError, check_count, check_seed, check_steps
from experiments.eval_runs import eval_runs
from experiments.export import FORMATS, check_exportable, export_run, export_task, table_format
from experiments.executors import Placement, check_placement, make_executor, parse_gpus
from experiments.grid import run_grid
from experiments.load import load_run
from experiments.outputs import REPLACES, check_output, per_run_paths, refuse_protected, write_output
from experiments.registry import task_class
from experiments.results import build_report
from experiments.rundir import new_run_dir
from experiments.runspec import resolve_spec, task_sets_only
from experiments.scaffold import write_task_files
from experiments.spec import load_spec, validate_against_registry
from experiments.trackers import check_sinks
from experiments.training import TrainFailed, TrainFailedInterrupt, TrainOptions, resume_run, start_run
from gpt.distributed import exit_rank
from gpt.generate import sample_stream
from tasks.testing import run_checks

app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None, no_args_is_help=True,
    help="workbench: train small GPTs on synthetic tasks and Shakespeare, and score them.",
)


def one_line(msg: str) -> str:
    """A message as one printable line: control characters (a newline in a path) escaped, and lone
    surrogates (a path typed in another encoding), which a strict UTF-8 stream cannot write."""
    msg = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in msg)
    return msg.encode("utf-8", "backslashreplace").decode("utf-8")


def fail(msg: str, code: int = 2) -> None:
    typer.echo("error: " + one_line(msg), err=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn UserError (and friends) into one line + exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            fail(str(e))
        except TrainFailedInterrupt as e:
            fail(str(e), e.code)
        except TrainFailed as e:
            fail(str(e), e.code)

    return wrapper


SetOpt = typer.Option([], "--set", "-s", help="override a config field: task.KEY=V, model.KEY=V or train.KEY=V")
IncludeOpt = typer.Option([], "--include", help="a Python file defining extra task classes")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | mps")
TrustOpt = typer.Option(False, "--trust-code", help="run the task code kept in a run folder that was not trained "
                        "on this machine (a downloaded export, say); only for folders you trust")
# ---- train ---------------------------------------------------------------------------------

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
    if target_acc is not None and not 0 <= target_acc <= 1:
        raise UserError(f"--target-acc must be in [0, 1], got {target_acc}")
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
    if task is None:
        raise UserError("missing --task; see `workbench tasks` for the list")
    spec = resolve_spec(task, preset, sets, steps, seed, include, init_from, target_acc)
    start_run(spec, TrainOptions(out=out or new_run_dir(task), device=device, quiet=quiet, **trackers))


# ---- sample --------------------------------------------------------------------------------

@app.command()
@user_errors
def sample(
    run: Path = typer.Argument(..., help="run directory"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="text to continue (default: a newline)"),
    tokens: int = typer.Option(500, "--tokens", "-n"),
    temperature: float = typer.Option(0.8, "--temperature"),
    top_k: Optional[int] = typer.Option(200, "--top-k"),
    seed: int = typer.Option(1337, "--seed"),
    device: str = DeviceOpt,
    trust_code: bool = TrustOpt,
) -> None:
    """Stream sampled text from a run."""


    check_seed(seed)
    check_count(tokens, "--tokens", MAX_TOKENS)
    if not (0 < temperature < float("inf")) or (top_k is not None and top_k <= 0):
        raise UserError("--temperature must be a positive finite number and --top-k positive")
    r = load_run(run, device, trust_code=trust_code)
    if prompt is None:  # a newline where the vocabulary has one (text), else the first token
        prompt = "\n" if "\n" in r.task.vocab.chars else ""
    ids = r.encode_prompt(prompt) if prompt else [0]
    gen = torch.Generator(device=r.device).manual_seed(seed)
    sys.stdout.write(prompt)
    for t in sample_stream(r.model, ids, tokens, temperature, top_k, gen):
        sys.stdout.write(r.task.vocab.chars[t])
        sys.stdout.flush()
    sys.stdout.write("\n")


# ---- eval ----------------------------------------------------------------------------------

@app.command("eval")
@user_errors
def eval_cmd(
    runs: list[Path] = typer.Argument(..., help="one or more run directories"),
    n: int = typer.Option(10_000, "--n", help="problems to score"),
    split: str = typer.Option("test", "--split", help="test (held out, in distribution) or ood"),
    by: Optional[str] = typer.Option(None, "--by", help="bucket columns, comma-separated (e.g. a_digits,b_digits)"),
    sets: list[str] = typer.Option([], "--set", "-s", help="task.KEY=V: change the task for evaluation only"),
    fmt: str = typer.Option("table", "--format", help="table | csv | markdown | json"),
    out: Optional[Path] = typer.Option(None, "--out", help=f"also write the table here (format by --format); {REPLACES}"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="write one JSON line per problem; with several runs "
                                           f"one file per run, STEM.0.SUFFIX, STEM.1.SUFFIX, ...; {REPLACES}"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG (or any format matplotlib writes, by the suffix): "
                                        "accuracy by the --by column, a line per run; with two --by columns a heatmap "
                                        f"per run (needs matplotlib); {REPLACES}"),
    batch_size: int = typer.Option(1024, "--batch-size"),
    seed: int = typer.Option(0, "--seed", help="which fixed evaluation set"),
    checkpoint: str = typer.Option("ckpt.pt", "--checkpoint", help="ckpt.pt (latest) or best.pt"),
    include: list[str] = typer.Option([], "--include", help="score with the task in this file (a new version of "
                                      "the run's task: a bucket added after training, say) instead of the run's copy"),
    device: str = DeviceOpt,
    trust_code: bool = TrustOpt,
) -> None:
    """Exact-match accuracy of runs on held-out problems, by bucket, with 95% Wilson intervals, and the
    baseline of always giving the most common answer."""
    check_seed(seed)
    check_count(n, "--n", 10**8)
    check_count(batch_size, "--batch-size", 2**16)
    if fmt not in ("table", "csv", "markdown", "json"):
        raise UserError(f"--format must be table, csv, markdown or json, got {fmt!r}")
    options = task_sets_only(sets, "eval")
    # every output path is checked now, not after minutes of decoding (experiments/outputs.py)
    sample_paths = per_run_paths(samples, len(runs), "--samples")
    if out is not None:
        check_output(out, "--out")
    if plot is not None:
        check_plot_path(plot)
    missing = [f for f in include if not Path(f).is_file()]
    if missing:
        raise UserError(f"--include file not found: {missing[0]}")
    if include:  # on purpose, and said: the runs' own copies are what loading them normally runs
        typer.echo(f"note: scoring with the task in {', '.join(include)}, not the copy each run was trained with",
                   err=True)
    result = eval_runs(runs, n=n, split=split, by=by, task_options=options, samples=sample_paths, plot=plot is not None,
                       batch_size=batch_size, seed=seed, checkpoint=checkpoint, device=device, trust_code=trust_code,
                       include=include)
    print_eval(result, fmt, f"{split} accuracy, n={n}")
    if out:
        write_output(out, format_eval(result, "markdown" if fmt == "table" else fmt), "--out")
    if plot and result.metric == "accuracy":
        eval_plot(result, plot)


# ---- ask -----------------------------------------------------------------------------------

@app.command()
@user_errors
def ask(
    run: Path = typer.Argument(..., help="run directory"),
    prompts: list[str] = typer.Argument(..., help='one or more problems, e.g. "12+7*3-5="'),
    checkpoint: str = typer.Option("ckpt.pt", "--checkpoint", help="ckpt.pt (latest) or best.pt"),
    tokens: int = typer.Option(200, "--tokens", "-n", help="characters to generate for text runs"),
    device: str = DeviceOpt,
    trust_code: bool = TrustOpt,
) -> None:
    """Ask a run: its completion, the parsed and the true answer, and any wrong trace steps."""
    check_count(tokens, "--tokens", MAX_TOKENS)
    answers = ask_run(run, prompts, device=device, checkpoint=checkpoint, tokens=tokens, trust_code=trust_code)
    typer.echo("\n\n".join(format_answer(a) for a in answers))


# ---- check ---------------------------------------------------------------------------------

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
               f"       python -m pytest {directory / f'test_{name}.py'}")


# ---- bench ---------------------------------------------------------------------------------

@app.command()
@user_errors
def bench(
    task: str = typer.Option("addition", "--task", "-t"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="default: the task's own"),
    sets: list[str] = SetOpt,
    steps: int = typer.Option(60, "--steps", help="timed optimizer steps (after --warmup)"),
    warmup: int = typer.Option(10, "--warmup"),
    run: Optional[Path] = typer.Option(None, "--run", help="a trained run of the task, for realistic decode numbers"),
    decode_n: int = typer.Option(2000, "--decode-n", help="problems decoded, with and without the KV cache"),
    json_out: Optional[Path] = typer.Option(None, "--json", help=f"also write the figures here as JSON; {REPLACES}"),
    device: str = DeviceOpt,
    trust_code: bool = TrustOpt,
) -> None:
    """Benchmark a task and preset: ms/step, tokens/s, MFU, data share, decode problems/s."""
    check_count(steps, "--steps", 100_000)
    if not (0 <= warmup <= 100_000 and 0 <= decode_n <= 10**7):
        raise UserError("--warmup must be between 0 and 100,000 and --decode-n between 0 and 10,000,000")
    if json_out is not None:
        check_output(json_out, "--json")
    result = run_bench(task, preset, device, steps, warmup, run, decode_n, sets, trust_code)
    typer.echo(format_result(result))
    if json_out:
        write_output(json_out, json_dumps(result), "--json")


# ---- show / tasks / presets -----------------------------------------------------------------

@app.command()
@user_errors
def show(
    task: str = typer.Option(..., "--task", "-t"),
    sets: list[str] = SetOpt,
    n: int = typer.Option(5, "-n", "--n"),
    split: str = typer.Option("train", "--split"),
    seed: int = typer.Option(0, "--seed"),
    include: list[str] = IncludeOpt,
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="whose task options apply (default: the task's own, as in train)"),
) -> None:
    """Print sample problems: each input token above its target, masked targets shown as ·"""
    check_seed(seed)
    check_count(n, "-n", 100_000)
    task_sets_only(sets, "show")
    t = build_task(resolve_spec(task, preset, sets, include=include))  # the task `workbench train` builds
    try:
        examples = t.examples(seed, split, n)
    except ValueError as e:  # a split the task does not have
        raise UserError(str(e)) from None
    print_examples(t, examples)


@app.command("tasks")
@user_errors
def tasks_cmd(include: list[str] = IncludeOpt,
              fmt: str = typer.Option("table", "--format", help="table | json")) -> None:
    """List tasks: origin, description, options with defaults, splits."""
    list_tasks(include, fmt)


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


@app.command()
@user_errors
def presets(
    fmt: str = typer.Option("table", "--format", help="table | json"),
    everything: bool = typer.Option(False, "--all", help="also the presets kept only so that old figures reproduce"),
) -> None:
    """List named presets (--all: with those kept only to reproduce docs/LOG.md's figures)."""
    list_presets(fmt, archived=everything)


# ---- attention (workbench attention) ------------------------------------------------------

@app.command()
@user_errors
def attention(
    run: Path = typer.Argument(..., help="run directory"),
    prompt: str = typer.Argument(..., help='a problem as `workbench ask` takes it, e.g. "123+456"; text for a text run'),
    checkpoint: str = typer.Option("ckpt.pt", "--checkpoint", help="ckpt.pt (latest) or best.pt"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help=f"output file (default: attention.png or attention.json in the current folder); {REPLACES}"),
    fmt: Optional[str] = typer.Option(None, "--format", help="png | json (default: json if --out ends in .json, else png)"),
    tokens: int = typer.Option(32, "--tokens", "-n", help="characters to generate for text runs"),
    device: str = DeviceOpt,
    trust_code: bool = TrustOpt,
) -> None:
    """Draw every layer x head's attention weights over PROMPT and the run's greedy completion.

    The weights come from the model's own forward pass. Row i is what token i attends to while
    it predicts token i + 1; the completion is marked in red. JSON holds the tokens, prompt_len
    and weights[layer][head][query][key]."""
    check_count(tokens, "--tokens", MAX_TOKENS)
    path, maps = attention_command(run, prompt, checkpoint, out, fmt, device, tokens, trust_code)
    L, H = maps.weights.shape[:2]
    typer.echo(f"wrote {path}: {L} x {H} (layers x heads) over {maps.prompt!r} + completion {maps.completion!r}")


# ---- export (workbench export task|run) -----------------------------------------------------

export_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Export a task's problems as a dataset file, or a run as a model folder.")
app.add_typer(export_app, name="export")


@export_app.command("task")
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


@export_app.command("run")
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


_ARGV: list[str] = []


def launch_torchrun(nproc: int, out: Path) -> None:
    """Re-run this very command under `torchrun --nproc_per_node=N` (PyTorch's own launcher)."""
    args, skip = [], False
    for a in _ARGV:
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


class Interrupted(BaseException):
    """SIGINT or SIGTERM outside training (which checkpoints on them itself): raised where the
    process is, so that every write under way removes its temp file on the way out.  A
    BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while a command runs; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    old = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """Entry point: click's usage errors become one line and exit code 2 as well."""
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    try:
        with signals_raise():
            rv = app(args=argv, standalone_mode=False, prog_name="workbench")
        return rv if isinstance(rv, int) else 0
    except Interrupted as e:
        name = signal.Signals(e.signum).name
        typer.echo(f"error: interrupted by {name}; nothing was left half-written", err=True)
        return 128 + e.signum
    except typer.Exit as e:
        return e.exit_code
    except click_exc.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            typer.echo(e.ctx.get_help() if e.ctx else "see `workbench --help`", err=True)
            return 0
        # command_path names a sub-command in full ("workbench export task"), prog_name included
        cmd = f"{e.ctx.command_path} --help" if e.ctx else "workbench --help"
        typer.echo(f"error: {e.format_message()} (see `{cmd}`)", err=True)
        return 2
    except click_exc.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        return 2
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return _unexpected(e)


def _unexpected(e: BaseException) -> int:
    """An exception no command turned into a UserError: exit 2 if it is the user's, else 1."""
    if os.environ.get("WORKBENCH_DEBUG"):
        raise e
    if isinstance(e, OSError) and e.errno in USER_ERRNOS:
        where = f": {e.filename}" if e.filename else ""
        typer.echo(f"error: {e.strerror or e}{where}", err=True)
        return 2
    if isinstance(e, MemoryError):
        typer.echo("error: out of memory; try a smaller --batch-size, model or --n", err=True)
        return 2
    msg = " ".join(str(e).split()) or "(no message)"
    typer.echo(f"internal error: {type(e).__name__}: {msg[:500]} "
               "(a bug; WORKBENCH_DEBUG=1 shows the traceback)", err=True)
    return 1


def entry() -> None:
    lifeline.hold()  # a `workbench run` subprocess ends with its runner
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_rank(code)  # a torchrun rank: see exit_rank for why it skips finalization
    sys.exit(code)
