"""Commands on a trained run: `eval`, `ask`, `sample` and `attention`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import torch
import typer

from experiments.ask import ask as ask_run
from experiments.ask import format_answer
from experiments.attention import attention_command
from experiments.commands.options import DeviceOpt, TrustOpt, user_errors
from experiments.display import check_plot_path, eval_plot, format_eval, print_eval
from experiments.errors import MAX_TOKENS, UserError, check_count, check_seed
from experiments.eval_runs import eval_runs
from experiments.load import load_run
from experiments.outputs import REPLACES, check_output, per_run_paths, write_output
from experiments.runspec import task_sets_only
from gpt.generate import sample_stream

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


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
