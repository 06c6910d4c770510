"""`workbench bench`: step time, MFU, data share and decode speed of a task and preset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from experiments.bench import bench as run_bench
from experiments.bench import format_result, json_dumps
from experiments.commands.options import DeviceOpt, SetOpt, TrustOpt, user_errors
from experiments.errors import UserError, check_count
from experiments.outputs import REPLACES, check_output, write_output

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


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
