"""Shared test helpers: run the CLI in-process or as a subprocess, read metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from experiments.cli import main

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"tokens_per_s", "ms_per_step", "train_time"}

# a model small enough to train in a few seconds on 2 cores
TINY = ["--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.n_embd=32",
        "--set", "model.block_size=32", "--set", "train.batch_size=8", "--set", "train.eval_iters=2"]
# the same as a spec's `set = { ... }` table (2-digit addition)
TINY_SETS = ('"model.n_layer" = 1, "model.n_embd" = 32, "model.n_head" = 2, "model.block_size" = 12, '
             '"train.batch_size" = 16, "train.eval_interval" = 10, "train.eval_iters" = 2, "task.max_digits" = 2')


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def workbench_proc(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "experiments", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def workbench_run(*args: str, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess to its end.  fault sets WORKBENCH_FAULT (gpt.train.Fault:
    kill:step=N, kill:eval=N or kill:ckpt=N), so the process SIGKILLs itself at that point."""
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_FAULT"}
    env["PYTHONUNBUFFERED"] = "1"
    if fault:
        env["WORKBENCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "experiments", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def killed(p: subprocess.CompletedProcess) -> bool:
    """Did the process die of SIGKILL (as a fault makes it)?"""
    return p.returncode == -signal.SIGKILL


def metrics(run: Path, drop_timing: bool = True) -> list[dict]:
    recs = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    if drop_timing:
        recs = [{k: v for k, v in r.items() if k not in TIMING} for r in recs]
    return recs
