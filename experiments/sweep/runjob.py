"""One run of a grid: a `workbench train` subprocess, then one `workbench eval` per [[eval]].

A new run's settings reach its `workbench train` as a record, not as flags: the runner resolves
the run's RunSpec from the spec's typed values (specfile.resolve_variant), writes it beside the run
folder (VARIANT/.seedS.run-spec.json, removed once train has ended) and starts
`workbench train --task T --run-spec FILE --out RUN`, which trains exactly that spec.  The flags
a user would type for the same run (train_args) are what `workbench run --dry-run` lists.

`execute(job, env)` is all an executor calls (executors.py): it trains the run (or resumes
it from its checkpoint), evaluates it, and writes RUN/result.json, status done or failed.  It
is a module-level function of picklable arguments, so that Ray can ship it to another machine,
where the output directory is the same shared folder.  Each subprocess is tied to the process
that starts it (lifeline.py) and, with a timeout, is stopped with SIGTERM (the trainer saves a
checkpoint) and then, after a grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import UserError
from experiments.registry import task_class
from experiments.rundir import FileLock, RunLock
from experiments.runspec import read_run_spec, spec_to_dict
from experiments.sweep import lifeline
from experiments.sweep.specfile import resolve_variant
from experiments.sweep.spectypes import EvalSpec, Spec, Variant, slug
from gpt.atomic import atomic_write_text

# What a run folder can hold before its config.json: train's run lock (rundir.RunLock) and the
# result.json written for an attempt that failed before training made anything.
BEFORE_CONFIG = frozenset({".lock", "result.json"})
KILL_GRACE_S = 60.0  # after SIGTERM at a timeout: time to write the checkpoint before SIGKILL
LOCK_WAIT_S = 120.0  # how long a run waits for a dying trainer (a killed runner's orphan) to let go
POLL_S = 0.25  # a timed attempt looks at the clock this often (tests give it a fake clock)
clock = time.monotonic  # the clock of --timeout: a module attribute so that a test can replace it
# The local executor's threads resolve runs at once, and resolving imports a spec's include files
# into the one task registry they share: one at a time.
_RESOLVING = threading.Lock()


@dataclass(frozen=True)
class RunKey:
    variant: Variant
    seed: int

    def dir(self, root: Path) -> Path:
        return root / self.variant.name / f"seed{self.seed}"


@dataclass(frozen=True)
class Job:
    """One attempt at one run: everything `execute` needs, picklable (Ray sends it to a worker)."""

    spec: Spec
    key: RunKey
    root: Path  # absolute: a Ray worker may start elsewhere
    threads: int  # OMP threads of its subprocesses
    trackers: tuple[str, ...] = ()
    timeout_s: float | None = None  # the attempt's wall time, training and evals together

    @property
    def name(self) -> str:
        return f"{self.key.variant.name} seed {self.key.seed}"


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold rundir.FileLock on `path` for the with-block; UserError naming `what` if another
    process holds it. The file stays: a run folder's leftover `.lock` is removed by name later."""
    lock = FileLock(path, what)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def read_result(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_result(run: Path, result: dict) -> None:
    """RUN/result.json, atomically; the folder is made if training never got that far."""
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "result.json", json.dumps(result, indent=1))


def init_dir(spec: Spec, key: RunKey, root: Path) -> Path | None:
    """The run a fine-tuning variant starts from: the source variant's run with the same seed,
    or its first seed when it has only some."""
    if not key.variant.init_from:
        return None
    src = spec.variant(key.variant.init_from)
    seed = key.seed if key.seed in src.seeds else src.seeds[0]
    return RunKey(src, seed).dir(root)


def clear_unstarted(run: Path) -> None:
    """A run that died before writing its config.json: remove what it left, by name (checked
    by the runner to be nothing else), and keep the empty folder, which train accepts."""
    if not run.is_dir() or (run / "config.json").exists():
        return
    (run / "result.json").unlink(missing_ok=True)
    lock = run / ".lock"
    if lock.is_file():
        try:
            with exclusive_lock(lock, str(run)):  # free: its owner is dead (train's lock is a flock too)
                lock.unlink()
        except UserError:
            pass  # a trainer left by a killed runner still holds it: train refuses, the run is recorded failed


def wait_for_lock(run: Path, timeout_s: float = LOCK_WAIT_S) -> None:
    """Wait while another process holds the run's lock: a trainer whose runner was killed is
    saving its checkpoint on the way out (lifeline.py).  Past the timeout, train itself
    refuses the run with the holder's pid, and the run is recorded failed."""
    deadline = time.monotonic() + timeout_s
    while (run / ".lock").exists() and time.monotonic() < deadline:
        lock = RunLock(run)
        try:
            lock.acquire()
        except UserError:
            time.sleep(0.5)
            continue
        lock.release()  # RunLock removes the file: nobody holds it


def tracker_args(spec_name: str, v: Variant, seed: int, log: Sequence[str]) -> list[str]:
    """`--log` for a run of a spec, tagged with the spec, variant and seed (none without --log)."""
    if not log:
        return []
    args = [a for sink in log for a in ("--log", sink)]
    return args + ["--tag", f"spec={spec_name}", "--tag", f"variant={v.name}", "--tag", f"seed={seed}"]


def train_args(v: Variant, seed: int, out: Path, init_dir: Path | None) -> list[str]:
    """The `workbench train` flags a user would type for one run of a variant: what a dry run
    lists.  They resolve to the RunSpec the runner hands the run itself (start_args)."""
    s = v.run
    args = ["train", "--task", s.task, "--seed", str(seed), "--out", str(out), "--quiet"]
    if s.preset:
        args += ["--preset", s.preset]
    if s.steps is not None:
        args += ["--steps", str(s.steps)]
    if s.target_acc is not None:
        args += ["--target-acc", str(s.target_acc)]
    for k, val in s.sets:
        args += ["--set", f"{k}={slug(val)}"]
    for inc in s.include:
        args += ["--include", inc]
    if init_dir is not None:
        args += ["--init-from", str(init_dir)]
    if s.device:
        args += ["--device", s.device]
    return args


def run_spec_file(run: Path) -> Path:
    """Where the runner leaves a new run's RunSpec for its train process: beside the run folder,
    which train wants empty."""
    return run.parent / f".{run.name}.run-spec.json"


def start_args(v: Variant, seed: int, run: Path, init_dir: Path | None) -> list[str]:
    """Resolve a new run's RunSpec, write it to run_spec_file(run), and return the `workbench train`
    arguments that train it (--task names it in the log and in `ps`; train checks it against the
    file).  UserError when the settings do not resolve (a fine-tuning run's model keys against
    its source's model)."""
    with _RESOLVING:
        spec = resolve_variant(v, seed, init_dir)
    atomic_write_text(run_spec_file(run), json.dumps(spec_to_dict(spec), indent=1) + "\n")
    args = ["train", "--task", spec.task, "--run-spec", str(run_spec_file(run)), "--out", str(run), "--quiet"]
    return args + (["--device", v.run.device] if v.run.device else [])


def eval_args(e: EvalSpec, run: Path, out: Path, device: str | None = None) -> list[str]:
    args = ["eval", str(run), "--split", e.split, "--n", str(e.n), "--format", "json", "--out", str(out)]
    if device:
        args += ["--device", device]
    if e.by:
        args += ["--by", ",".join(e.by)]
    for k, val in e.sets:
        args += ["--set", f"{k}={slug(val)}"]
    return args


class _TimedOut(Exception):
    pass


def _subprocess(args: list[str], log, threads: int, env: Mapping[str, str], deadline: float | None,
                own_group: bool = False) -> int:
    full_env = {**os.environ, **env, **lifeline.child_env(),
                "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.write(f"$ workbench {' '.join(args)}\n")
    log.flush()
    proc = subprocess.Popen([sys.executable, "-m", "experiments", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=full_env, process_group=0 if own_group else None)
    try:
        while True:
            try:
                return proc.wait(timeout=None if deadline is None else max(0.0, min(POLL_S, deadline - clock())))
            except subprocess.TimeoutExpired:
                if clock() >= deadline:
                    raise
    except subprocess.TimeoutExpired:
        proc.terminate()  # the trainer saves a checkpoint on SIGTERM, so a retry resumes
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise _TimedOut from None
    finally:
        if proc.poll() is None:  # an unexpected exception in this thread: don't leave the child running
            proc.kill()
            proc.wait()


def _tail(path: Path, since: int = 0, n: int = 3) -> str:
    """The last lines this attempt wrote to a run's log (commands left out)."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", errors="replace")
        lines = [x for x in text.splitlines() if x.strip() and not x.startswith("$ ")]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def _splits_of(run: Path) -> tuple[str, ...]:
    spec, _ = read_run_spec(run)
    return tuple(task_class(spec.task, spec.include).splits)


def _train(job: Job, run: Path, src: Path | None, log, log_path: Path, since: int, env: Mapping[str, str],
           deadline: float | None, own_group: bool) -> str:
    """Train a new run from its resolved RunSpec, or resume it from its checkpoint; the error, or ""."""
    key = job.key
    if (run / "config.json").exists():
        args = ["train", "--resume", "--out", str(run), "--quiet"]
        if key.variant.run.device:
            args += ["--device", key.variant.run.device]
    else:
        clear_unstarted(run)  # died before writing its config: nothing to keep
        try:
            args = start_args(key.variant, key.seed, run, src)
        except UserError as e:
            log.write(f"error: {e}\n")  # where train would have said it
            return f"its settings do not resolve: {e}"
    args += tracker_args(job.spec.name, key.variant, key.seed, job.trackers)
    try:
        code = _subprocess(args, log, job.threads, env, deadline, own_group)
    finally:
        run_spec_file(run).unlink(missing_ok=True)  # read at start-up; config.json records the spec now
    if code != 0:
        return f"training exited with code {code}: {_tail(log_path, since)}"
    atomic_write_text(run / ".trained", "")
    return ""


def _steps(job: Job, run: Path, src: Path | None, log, log_path: Path, since: int, env: Mapping[str, str],
           deadline: float | None, own_group: bool) -> str:
    """Train (or resume) and evaluate; the error, or "" when all went well."""
    spec, key = job.spec, job.key
    if src is not None and (read_result(src) or {}).get("status") != "done":
        return f"its init_from run {src} did not finish"
    if not (run / ".trained").exists():
        error = _train(job, run, src, log, log_path, since, env, deadline, own_group)
        if error:
            return error
    splits = _splits_of(run)
    for e in (e for e in spec.evals if e.split in splits):  # an eval applies where its split exists
        # `workbench eval` never writes into a run folder (outputs.py); the runner owns this run,
        # so it has the table written beside it and moves it in itself
        part = run.parent / f".{run.name}.eval-{e.name}.json.part"
        try:
            code = _subprocess(eval_args(e, run, part, key.variant.run.device), log,
                               job.threads, env, deadline, own_group)
            if code != 0:
                return f"eval {e.name!r} exited with code {code}: {_tail(log_path, since)}"
            os.replace(part, run / f"eval-{e.name}.json")
        finally:
            part.unlink(missing_ok=True)
    return ""


def execute(job: Job, env: Mapping[str, str] | None = None, own_group: bool = False) -> dict:
    """Train (or resume) and evaluate one run; returns its result record (also written).
    `env` is added to its subprocesses' environment (the local executor's CUDA_VISIBLE_DEVICES).
    `own_group` starts them in a process group of their own: Ray kills a dead driver's worker
    with its whole group, SIGKILL, and a trainer outside it gets its lifeline's SIGTERM instead,
    which lets it checkpoint.  The local runner leaves them in its group, so that Ctrl-C in the
    terminal reaches them as it reaches the runner."""
    run = job.key.dir(job.root)
    log_path = run.parent / f"seed{job.key.seed}.log"
    run.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if not (run / ".trained").exists():
        wait_for_lock(run)  # before the timeout starts: waiting is not the attempt's own time
    deadline = None if job.timeout_s is None else clock() + job.timeout_s
    src = init_dir(job.spec, job.key, job.root)
    with open(log_path, "a", encoding="utf-8") as log:
        since = log.tell()
        try:
            error = _steps(job, run, src, log, log_path, since, env or {}, deadline, own_group)
        except _TimedOut:
            error = f"timed out after {job.timeout_s:g} s (--timeout); its checkpoint is kept"
            log.write(f"workbench run: {error}\n")
    result = {"variant": job.key.variant.name, "seed": job.key.seed, "status": "failed" if error else "done",
              "error": error, "wall_s": round(time.time() - started, 1)}
    write_result(run, result)  # a failure before training made the folder still gets a record
    return result
