"""Shared test helpers: run the CLI in-process or as a subprocess, read metrics."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from experiments.cli import main
from experiments.commands import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"tokens_per_s", "ms_per_step", "train_time"}

# a model small enough to train in a few seconds on 2 cores
TINY = ["--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.n_embd=32",
        "--set", "model.block_size=32", "--set", "train.batch_size=8", "--set", "train.eval_iters=2"]
# the same as a spec's `set = { ... }` table (2-digit addition)
TINY_SETS = ('"model.n_layer" = 1, "model.n_embd" = 32, "model.n_head" = 2, "model.block_size" = 12, '
             '"train.batch_size" = 16, "train.eval_interval" = 10, "train.eval_iters" = 2, "task.max_digits" = 2')


def spec_head(sets: str = TINY_SETS) -> str:
    """A sweep spec's first nine lines: one seed, one minute, and a [base] of 2-step tiny addition runs that
    never stop early (target 0). Tests append variants, evals and reports to it; errors cite lines after it."""
    return ('budget_minutes = 1\nseeds = [1]\n\n[base]\ntask = "addition"\npreset = "small"\nsteps = 2\n'
            f'target_acc = 0\nset = {{ {sets} }}\n')


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def workbench_proc(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "experiments", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def workbench_run(*args: str, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess to its end.  fault sets WORKBENCH_FAULT (gpt.faults.Fault:
    kill:step=N, kill:eval=N or kill:ckpt=N), so the process SIGKILLs itself at that point."""
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_FAULT"}
    env["PYTHONUNBUFFERED"] = "1"
    if fault:
        env["WORKBENCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "experiments", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# A fork server that has imported the CLI (and torch) once: each forked_run is a real process, killed
# for real, without the two seconds a new interpreter spends importing.  Kill tests start dozens of
# them; what they test is the files a SIGKILL leaves, not the interpreter's start-up.  Besides the
# CLI, what a run imports on its way: torch._dynamo (torch's optimizers import it, with sympy, 0.8 s)
# and typer's pydantic adapters (its first parsed option).  Imports only: a server that had run torch
# code would hand its children a thread pool whose threads did not survive the fork.
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["experiments.cli", *sorted({c.module for c in COMMANDS.values()}), "torch._dynamo",
                               "typer._adapters"])


def _forked_main(args: list[str], env: dict[str, str], out: str, err: str) -> None:
    """The child: the caller's environment (the fork server's dates from its own start), output to
    files, and the CLI's exit code as the process's."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    sys.stdout.reconfigure(write_through=True)  # as PYTHONUNBUFFERED: a SIGKILL loses no output
    sys.stderr.reconfigure(write_through=True)
    sys.exit(main(args))


def forked_run(*args: str, fault: str | None = None, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """workbench_run in a process forked from the fork server: the same exit codes (-9 when a fault
    kills it) and output (to files, not a terminal), in a fraction of the time.  `env` is added to
    the environment."""
    env = {**{k: v for k, v in os.environ.items() if k != "WORKBENCH_FAULT"}, **(env or {})}
    if fault:
        env["WORKBENCH_FAULT"] = fault
    argv = [str(a) for a in args]
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        proc = _FORKS.Process(target=_forked_main, args=(argv, env, out, err))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["workbench", *argv], timeout)
        with open(out) as o, open(err) as e:
            return subprocess.CompletedProcess(["workbench", *argv], proc.exitcode, o.read(), e.read())


HELD_TASK = """\
import json
import os
import sys
import time
from pathlib import Path

from tasks.addition import AdditionTask

HOLD, AT, SECOND_WAVE = {hold!r}, {at}, {second_wave}
RUNNER = os.getppid()  # the process that started this trainer


def _a_run_is_done() -> bool:  # in this trainer's grid: RUN = GRID/VARIANT/seedN
    if "--out" not in sys.argv:
        return False
    grid = Path(sys.argv[sys.argv.index("--out") + 1]).parent.parent
    return any(json.loads(p.read_text()).get("status") == "done" for p in grid.glob("*/seed*/result.json"))


HELD = not SECOND_WAVE or _a_run_is_done()


class HeldAddition(AdditionTask):
    name = "held_addition"

    def batch(self, seed, split, step, *args, **kw):
        # held by a test (tests/helpers.py, held_task); the trainer's runner dying lets the step go
        # on, and the trainer then sees the SIGTERM its lifeline sent it
        while HELD and step == AT and os.path.exists(HOLD) and os.getppid() == RUNNER:  # (evals: steps >= 2**40)
            time.sleep(0.05)
        return super().batch(seed, split, step, *args, **kw)
"""


def held_task(folder: Path, at: int = 10, second_wave: bool = False) -> tuple[Path, Path]:
    """(an include file, a hold file to create): task `held_addition` is addition whose trainers, while the
    hold file exists, wait at step `at` until their runner dies (with `second_wave`, only those that
    started after a run of their grid was done).  A test that kills a runner holds its trainers
    mid-run this way, so that the kill cuts them short on a machine of any speed and load."""
    include, hold = folder / "held.py", folder / "hold"
    include.write_text(HELD_TASK.format(hold=str(hold), at=at, second_wave=second_wave))
    return include, hold


def killed(p: subprocess.CompletedProcess) -> bool:
    """Did the process die of SIGKILL (as a fault makes it)?"""
    return p.returncode == -signal.SIGKILL


def metrics(run: Path, drop_timing: bool = True) -> list[dict]:
    recs = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    if drop_timing:
        recs = [{k: v for k, v in r.items() if k not in TIMING} for r in recs]
    return recs


def overfit(model, x, y, steps: int = 40) -> tuple[float, float]:
    """AdamW (lr 1e-2) on one batch for `steps` steps: (the first loss, the last)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = loss = None
    for _ in range(steps):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss.item()
