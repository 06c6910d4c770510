"""Faults: kill -9 at chosen points, signals, NaNs, failing writes, two writers, incompatible checkpoints.

The runs are addition problems, which need no data file, with the features most likely to
break an exact resume switched on: dropout (reseeded per step), Abacus positions (offsets
hashed from the data) and length-split batches.  Kills land exactly where a test means
them to: the run SIGKILLs itself at a point named by WORKBENCH_FAULT (gpt.faults.Fault).
"""

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.errors import UserError
from experiments.rundir import RunLock
from gpt.checkpoint import load_checkpoint, read_metrics
from helpers import ROOT, TINY, cli, forked_run, killed, metrics, workbench_proc

EVAL_EVERY = 10
STEPS = 30


def args(out, *extra):
    return ["train", "--task", "addition", "--preset", "small", *TINY, "--steps", STEPS,
            "--set", f"train.eval_interval={EVAL_EVERY}", "--set", "train.warmup_steps=5",
            "--set", "model.dropout=0.1", "--set", "model.pos=abacus", "--set", "train.length_chunks=2",
            "--target-acc", "0", "--out", out, "--quiet", "--device", "cpu", *extra]


def resume(out, *extra):
    return ["train", "--resume", "--out", out, "--quiet", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from experiments.cli import main

    out = tmp_path_factory.mktemp("ref") / "run"
    assert main([str(a) for a in args(out)]) == 0
    recs = metrics(out)
    assert recs[-1]["stop"] == "steps"  # a finished run says so
    return recs


def assert_intact(run: Path, reference: list[dict]) -> None:
    recs = metrics(run)
    assert [r["step"] for r in recs] == list(range(STEPS + 1))  # each step exactly once
    assert recs == reference  # bit-identical to the uninterrupted run (timing fields aside)
    for name in ("ckpt.pt", "best.pt"):
        assert load_checkpoint(run / name)["step"] >= 0  # loads: not truncated or corrupt
    assert load_checkpoint(run / "ckpt.pt")["step"] == STEPS
    json.loads((run / "config.json").read_text())
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()


def kill_at(run: Path, fault: str) -> None:
    """Start (or resume) the run with a fault; check that it died exactly there, unfinished."""
    p = forked_run(*(resume(run) if (run / "config.json").exists() else args(run)), fault=fault)
    assert killed(p), (fault, p.returncode, p.stderr[-2000:])
    point, at = fault.removeprefix("kill:").split("=")
    at = int(at)
    logged = [r["step"] for r in read_metrics(run / "metrics.jsonl")]
    ckpt = load_checkpoint(run / "ckpt.pt")["step"] if (run / "ckpt.pt").exists() else None
    if point in ("step", "eval"):  # killed before step `at` was logged
        assert logged[-1:] == ([at - 1] if at > 0 else []), (fault, logged[-3:])
        assert ckpt == (max(0, at - 1) // EVAL_EVERY * EVAL_EVERY or None), (fault, ckpt)
    else:  # mid-write of ckpt.pt: the eval is logged, the new checkpoint complete but not in place
        assert logged[-1] == at and list(run.glob(".ckpt.pt.*.tmp")), fault
        assert ckpt == ((at - EVAL_EVERY) or None), (fault, ckpt)
    assert ckpt is None or ckpt < STEPS  # unfinished


NAMED = [
    ["kill:step=15"],  # mid-run, between checkpoints
    ["kill:ckpt=20"],  # mid-checkpoint-write: ckpt.pt must still be step 10's, whole
    ["kill:ckpt=10"],  # the first checkpoint's write: no ckpt.pt at all yet; restart from step 0
    ["kill:eval=20"],  # mid-eval: losses estimated, accuracy not yet
    ["kill:step=15", "kill:eval=30"],  # killed again while resuming, in the final eval
]
# and every other point of the run: each step, each eval, each checkpoint write (a forked process
# each, tests/helpers.py forked_run: ~0.5 s, where a new interpreter took ~3 s)
SWEEP = ([[f"kill:step={n}"] for n in range(1, STEPS + 1)] + [[f"kill:eval={n}"] for n in range(0, STEPS + 1, EVAL_EVERY)]
         + [[f"kill:ckpt={n}"] for n in range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)])


@pytest.mark.parametrize("faults", NAMED + [f for f in SWEEP if f not in NAMED], ids=lambda f: "+".join(f))
def test_kill_9_at_a_chosen_point_then_resume(faults, reference, tmp_path, capsys):
    run = tmp_path / "run"
    for fault in faults:
        kill_at(run, fault)
    code, _, err = cli(capsys, *resume(run))
    assert code == 0, err
    assert_intact(run, reference)


def test_a_malformed_fault_is_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_FAULT", "kill:sometimes")
    code, _, err = cli(capsys, *args(tmp_path / "run", "--steps", "2"))
    assert code == 2 and err.count("\n") == 1 and "WORKBENCH_FAULT='kill:sometimes'" in err
    assert not (tmp_path / "run").exists()  # a run that never started leaves no directory


def wait_for_steps(run: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(read_metrics(run / "metrics.jsonl")) > n:
            return
        time.sleep(0.02)
    raise AssertionError("run did not start")


# SIGTERM is also what a runner's death sends (lifeline.py)
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_checkpoint_and_exit(sig, code, tmp_path):
    run = tmp_path / "run"
    p = workbench_proc(*args(run, "--steps", "100000"))
    wait_for_steps(run, 3)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code
    assert f"workbench train --resume --out {run}" in err
    ckpt = load_checkpoint(run / "ckpt.pt")
    assert ckpt["step"] == metrics(run)[-1]["step"] >= 1  # the checkpoint is the last logged step
    assert ckpt["best_val"] < float("inf")


# ---- the run lock --------------------------------------------------------------------------

HOLDER = ("import sys, time\n"
          "from experiments.rundir import RunLock\n"
          "RunLock(sys.argv[1]).acquire()\n"
          "print('locked', flush=True)\n"
          "time.sleep(600)\n")


def test_a_second_process_is_refused_and_a_killed_owners_lock_is_free(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, *args(run, "--steps", "2", "--set", "train.eval_interval=2"))[0] == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = cli(capsys, *resume(run, "--steps", "4"))
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert f"{run} is in use by another workbench process (pid {holder.pid})" in err
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    assert (run / ".lock").exists()  # the killed owner's file is left behind, its lock is not:
    (run / ".lock").write_text(str(os.getpid()))  # even naming a live process, it does not block
    code, _, err = cli(capsys, *resume(run, "--steps", "4"))
    assert code == 0, err
    assert metrics(run)[-1]["step"] == 4 and not (run / ".lock").exists()


def _contend(run: str, rounds: int, barrier, holders, overlaps, wins) -> None:
    """Take the lock `rounds` times, counting how many processes hold it at once."""
    barrier.wait()
    done = 0
    while done < rounds:
        lock = RunLock(Path(run))
        try:
            lock.acquire()
        except UserError:
            continue
        with holders.get_lock():
            holders.value += 1
            if holders.value > 1:
                overlaps.value += 1
        time.sleep(0.0005)
        with holders.get_lock():
            holders.value -= 1
        lock.release()
        with wins.get_lock():
            wins.value += 1
        done += 1


def _take_once(run: str, barrier, result) -> None:
    barrier.wait()
    try:
        RunLock(Path(run)).acquire()  # held until this process exits
        result.put("won")
        time.sleep(2)
    except UserError as e:
        result.put(str(e))


def test_concurrent_takers_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")  # cheap: the children only take locks
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead.kill()
    dead.wait()
    (run / ".lock").write_text(str(dead.pid))  # a dead owner's lock, as kill -9 leaves it
    n = 4
    barrier, result = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_take_once, args=(str(run), barrier, result)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [result.get(timeout=60) for _ in range(n)]
    for p in procs:
        p.join(timeout=60)
    assert outcomes.count("won") == 1, outcomes
    assert all("is in use by another workbench process (pid" in o for o in outcomes if o != "won")

    # many takers, many times, each releasing as it goes: never two holders at once
    holders, overlaps, wins = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_contend, args=(str(run), 50, barrier, holders, overlaps, wins)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n
    assert wins.value == 50 * n and overlaps.value == 0


# ---- NaNs, full disks, incompatible checkpoints ---------------------------------------------

def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, capsys, monkeypatch):
    import gpt.train as gt

    real = gt.Trainer._loop

    def poisoned(self, cfg, model):
        fwd = self.fwd

        def f(x, y, **kw):
            logits, loss = fwd(x, y, **kw)
            if model.training and self.state.step == 14:  # update 15 (every chunk of it)
                loss = loss * float("nan")
            return logits, loss

        self.fwd = f
        return real(self, cfg, model)

    monkeypatch.setattr(gt.Trainer, "_loop", poisoned)
    code, _, err = cli(capsys, *args(tmp_path / "a", "--steps", "20"))
    assert code == 1 and "at step 15" in err and "nan_policy=skip" in err
    assert load_checkpoint(tmp_path / "a" / "ckpt.pt")["step"] == 10
    code, _, err = cli(capsys, *args(tmp_path / "b", "--steps", "20", "--set", "train.nan_policy=skip"))
    assert code == 0, err
    recs = metrics(tmp_path / "b")
    assert [r["step"] for r in recs if "skipped" in r] == [15]
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["skipped"] == 1


def test_failing_write_keeps_previous_checkpoint(tmp_path, capsys, monkeypatch):
    import gpt.atomic as ck

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

    class Os:  # gpt.atomic's view of os, with a disk that fills up
        def __getattr__(self, name):
            return getattr(os, name)

        def fdopen(self, fd, mode):
            return Full(real(fd, mode))

    monkeypatch.setattr(ck, "os", Os())
    run = tmp_path / "run"
    code, _, err = cli(capsys, *args(run))
    # a full disk is the user's to fix: exit 2, one line
    assert code == 2 and "No space left on device" in err and "previous checkpoint is intact" in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.undo()
    assert load_checkpoint(run / "ckpt.pt")["step"] == EVAL_EVERY
    assert not list(run.glob(".*.tmp"))


def test_incompatible_checkpoint_is_refused_and_says_what_differs(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, *args(run, "--steps", "10"))
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["n_layer"] = 2
    (run / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli(capsys, *resume(run, "--steps", "20"))
    assert code == 2 and "model.n_layer 1 vs 2" in err
    code, _, err = cli(capsys, "sample", run)
    assert code == 2 and "does not match" in err and "model.n_layer 1 vs 2" in err


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
