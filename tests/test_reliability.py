"""Faults: kill -9 anywhere, signals, NaNs, failing writes, two writers, incompatible checkpoints."""

import errno
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from gpt.checkpoint import load_checkpoint, read_metrics
from helpers import ROOT, TINY, cli, metrics, workbench_proc

EVAL_EVERY = 10
STEPS = 40


def args(out, *extra):
    return ["train", "--task", "shakespeare", "--preset", "nanogpt-cpu", *TINY, "--steps", STEPS,
            "--set", f"train.eval_interval={EVAL_EVERY}", "--set", "train.eval_iters=8",
            "--set", "train.warmup_steps=5", "--set", "model.dropout=0.1", "--out", out, "--quiet",
            "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shakespeare):
    from experiments.cli import main

    out = tmp_path_factory.mktemp("ref") / "run"
    assert main([str(a) for a in args(out)]) == 0
    return metrics(out)


def assert_intact(run: Path, reference: list[dict]) -> None:
    recs = metrics(run)
    assert [r["step"] for r in recs] == list(range(STEPS + 1))  # each step exactly once
    assert recs == reference  # bit-identical to the uninterrupted run
    for name in ("ckpt.pt", "best.pt"):
        assert load_checkpoint(run / name)["step"] >= 0  # loads: not truncated or corrupt
    json.loads((run / "config.json").read_text())
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()


def kill_trial(run: Path, rng: random.Random, capsys, kills: int = 2) -> None:
    """Start the run, SIGKILL it at random moments (several times), then let it finish."""
    resume = ["train", "--resume", "--out", run, "--quiet", "--device", "cpu"]
    for _ in range(kills):
        if run.exists() and not (run / "config.json").exists():
            shutil.rmtree(run)  # killed before the run existed: start it again
        p = workbench_proc(*(resume if (run / "config.json").exists() else args(run)))
        time.sleep(rng.uniform(1.0, 4.5))  # start-up ~1.5 s, then ~40 steps, 5 evals, 10 checkpoint writes
        p.send_signal(signal.SIGKILL)
        p.wait()
    if run.exists() and not (run / "config.json").exists():
        shutil.rmtree(run)
    code, _, err = cli(capsys, *(resume if (run / "config.json").exists() else args(run)))
    assert code == 0, err


def _trials(n):
    return [pytest.param(i, marks=[] if i < 3 else pytest.mark.slow) for i in range(n)]


@pytest.mark.parametrize("trial", _trials(24))
def test_kill_9_anywhere_then_resume(trial, reference, tmp_path, capsys):
    kill_trial(tmp_path / "run", random.Random(trial), capsys)
    assert_intact(tmp_path / "run", reference)


def test_kill_9_in_the_middle_of_a_checkpoint_write(reference, tmp_path, capsys):
    run = tmp_path / "run"
    # a child that dies (SIGKILL) halfway through writing its second checkpoint's temp file
    # only gpt.checkpoint's view of `os` is patched, so nothing else in the child is affected
    code = (
        "import os, signal, sys, gpt.checkpoint as c\n"
        "n = {'writes': 0}\n"
        "class Half:\n"
        "    def __init__(s, f): s.f = f\n"
        "    def __enter__(s): return s\n"
        "    def __exit__(s, *a): s.f.close()\n"
        "    def write(s, b):\n"
        "        n['writes'] += 1\n"
        "        s.f.write(b[: len(b) // 2]); s.f.flush()\n"
        "        if n['writes'] == 4: os.kill(os.getpid(), signal.SIGKILL)  # ckpt.pt at step 20\n"
        "        s.f.write(b[len(b) // 2:])\n"
        "    def flush(s): s.f.flush()\n"
        "    def fileno(s): return s.f.fileno()\n"
        "class Os:\n"
        "    def __getattr__(s, name): return getattr(os, name)\n"
        "    def fdopen(s, fd, mode): return Half(os.fdopen(fd, mode))\n"
        "c.os = Os()\n"
        "from experiments.cli import main\n"
        f"sys.exit(main({[str(a) for a in args(run)]!r}))\n"
    )
    p = workbench_proc_code(code)
    p.wait(timeout=120)
    assert p.returncode == -signal.SIGKILL
    assert list(run.glob(".*.tmp"))  # the torn temp file is there ...
    assert load_checkpoint(run / "ckpt.pt")["step"] == EVAL_EVERY  # ... and the real one is whole
    code_, _, err = cli(capsys, "train", "--resume", "--out", run, "--quiet", "--device", "cpu")
    assert code_ == 0, err
    for tmp in run.glob(".*.tmp"):
        tmp.unlink()  # leftovers of a killed writer are harmless; ckpt loading never reads them
    assert_intact(run, reference)


def workbench_proc_code(code: str):
    import subprocess

    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_steps(run: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(read_metrics(run / "metrics.jsonl")) > n:
            return
        time.sleep(0.02)
    raise AssertionError("run did not start")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_checkpoint_and_exit(sig, code, tmp_path, shakespeare):
    run = tmp_path / "run"
    p = workbench_proc(*args(run, "--steps", "100000"))
    wait_for_steps(run, 3)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code
    assert f"workbench train --resume --out {run}" in err
    step = load_checkpoint(run / "ckpt.pt")["step"]
    assert step == metrics(run)[-1]["step"]  # the checkpoint is the last logged step


def test_two_writers_and_stale_lock(tmp_path, capsys, shakespeare):
    run = tmp_path / "run"
    p = workbench_proc(*args(run, "--steps", "100000"))
    wait_for_steps(run, 3)
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--quiet")
    assert code == 2 and "in use by another workbench process" in err
    p.kill()
    p.wait()
    assert (run / ".lock").exists()  # the killed owner's lock is left behind ...
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--steps", "30", "--quiet")
    assert code == 0, err  # ... and does not block a new owner


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, capsys, monkeypatch, shakespeare):
    import gpt.train as gt

    real = gt.Trainer._loop

    def poisoned(self, cfg, model):
        fwd = self.fwd
        calls = {"n": 0}

        def f(x, y):
            logits, loss = fwd(x, y)
            if model.training:
                calls["n"] += 1
                if calls["n"] == 15:
                    loss = loss * float("nan")
            return logits, loss

        self.fwd = f
        return real(self, cfg, model)

    monkeypatch.setattr(gt.Trainer, "_loop", poisoned)
    code, _, err = cli(capsys, *args(tmp_path / "a"))
    assert code == 1 and "at step 15" in err and "nan_policy=skip" in err
    assert load_checkpoint(tmp_path / "a" / "ckpt.pt")["step"] == 10
    code, _, err = cli(capsys, *args(tmp_path / "b", "--set", "train.nan_policy=skip"))
    assert code == 0, err
    recs = metrics(tmp_path / "b")
    assert [r["step"] for r in recs if "skipped" in r] == [15]
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["skipped"] == 1


def test_failing_write_keeps_previous_checkpoint(tmp_path, capsys, monkeypatch, shakespeare):
    import gpt.checkpoint as ck

    real = os.fdopen
    n = {"saves": 0}

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, b):
            n["saves"] += 1
            if n["saves"] >= 4:  # config.json, ckpt + best at step 10, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def flush(self):
            self.f.flush()

        def fileno(self):
            return self.f.fileno()

    class Os:  # gpt.checkpoint's view of os, with a disk that fills up
        def __getattr__(self, name):
            return getattr(os, name)

        def fdopen(self, fd, mode):
            return Full(real(fd, mode))

    monkeypatch.setattr(ck, "os", Os())
    run = tmp_path / "run"
    code, _, err = cli(capsys, *args(run))
    assert code == 1 and "No space left on device" in err and "previous checkpoint is intact" in err
    monkeypatch.undo()
    assert load_checkpoint(run / "ckpt.pt")["step"] == EVAL_EVERY
    assert not list(run.glob(".*.tmp"))


def test_incompatible_checkpoint_is_refused_and_says_what_differs(tmp_path, capsys, shakespeare):
    run = tmp_path / "run"
    code, _, err = cli(capsys, *args(run, "--steps", "10"))
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["n_layer"] = 2
    (run / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--steps", "20", "--quiet")
    assert code == 2 and "model.n_layer 1 vs 2" in err
    code, _, err = cli(capsys, "sample", run)
    assert code == 2 and "does not match" in err


def test_same_seed_same_metrics_different_seed_different(tmp_path, capsys, reference):
    code, _, err = cli(capsys, *args(tmp_path / "again"))
    assert code == 0, err
    assert metrics(tmp_path / "again") == reference
    code, _, err = cli(capsys, *args(tmp_path / "other", "--seed", "7"))
    assert code == 0, err
    assert metrics(tmp_path / "other") != reference


def test_checkpoint_loading_is_weights_only(tmp_path):
    # a pickle that would run code when unpickled without weights_only
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"format": "workbench-checkpoint", "version": 1, "model": Evil(), "step": 0, "config": {}},
               tmp_path / "evil.pt")
    from gpt.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
