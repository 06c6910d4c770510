"""`workbench run SPEC`: train and evaluate every variant x seed of a spec, resumably.

Layout of the output directory (default runs/spec-NAME):

    spec.toml                  a copy of the spec that made it
    .run.lock                  flock'ed by the `workbench run` writing it (one at a time)
    VARIANT/seedS/             a run directory (config.json, metrics.jsonl, ckpt.pt, ...)
    VARIANT/seedS/eval-E.json  one accuracy (or loss) table per [[eval]]
    VARIANT/seedS/result.json  status: done | failed, wall time, error
    VARIANT/seedS.log          the run's stdout and stderr
    results.csv, results.md, *.png   written by experiments/results.py

Each run is a `workbench train` subprocess, then one `workbench eval` subprocess per
[[eval]], so a crash or a bad variant is recorded as failed and the grid goes on.
Re-running skips runs whose result.json says done, resumes runs that were interrupted
(their checkpoint is kept) and retries failed ones.

Specs come from anyone, so before it makes or removes anything the runner checks that every
path it will write (run folders, their logs, the files at the top) lies inside the output
directory with no symbolic link on the way, and it never deletes a tree: a run that died
before writing its config.json leaves only files of known names, and those are removed by
name (anything else in that folder stops the run, naming it).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence

from experiments.errors import UserError
from experiments.registry import task_class
from experiments.rundir import FileLock
from experiments.runspec import read_run_spec
from experiments.spec import Spec, Variant, eval_args, tracker_args, train_args
from gpt.atomic import atomic_write_bytes, atomic_write_text

LOCK_NAME = ".run.lock"
# What a run folder can hold before its config.json: train's run lock (rundir.RunLock) and the
# result.json this runner writes for an attempt that failed before training made anything.
_BEFORE_CONFIG = frozenset({".lock", "result.json"})


@dataclass(frozen=True)
class RunKey:
    variant: Variant
    seed: int

    def dir(self, root: Path) -> Path:
        return root / self.variant.name / f"seed{self.seed}"


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


def _real_root(root: Path) -> Path:
    """The output directory, resolved once.

    A symbolic link *as* the output directory is refused: it can be planted (say in a shared
    runs/) to send the runner's writes and deletions elsewhere, and the real path can be passed
    instead. Links further up (/tmp -> /private/tmp on macOS, a home on another disk) are the
    user's own setup and are followed; everything below the resolved root is checked.
    """
    if root.is_symlink():
        raise UserError(f"output directory {root} is a symbolic link; pass the directory it points to")
    if root.exists() and not root.is_dir():
        raise UserError(f"output directory {root} exists and is not a directory")
    # the nearest existing ancestor must be a folder, or mkdir will fail (a dry run says so too)
    above = next((p for p in root.absolute().parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"output directory {root} can't be made: {above} is not a directory")
    return root.resolve()


def _check_inside(root: Path, real_root: Path, path: Path) -> None:
    """Refuse a path that is not exactly real_root/<its relative part>: one that leaves the
    output directory (.., an absolute name) or passes through a symbolic link on the way."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = None
    if rel is None or ".." in rel.parts or path.resolve() != real_root / rel:
        raise UserError(f"{path} is not a plain path inside the output directory {root} "
                        f"(a symbolic link, or a name leading out of it); refusing to write there")


def _check_paths(spec: Spec, keys: list[RunKey], root: Path, real_root: Path) -> None:
    """Every path the runner writes, checked before it makes or removes anything."""
    tops = ["spec.toml", "spec.source", "timing.jsonl", LOCK_NAME, "results.csv", "results.md", "loss.png",
            "accuracy.png", *(f"heatmap-{e.heatmap}.png" for e in spec.evals)]
    for name in tops:
        _check_inside(root, real_root, root / name)
    for k in plan(spec):  # all of them: a run of --only may read from (init_from) any other
        run = k.dir(root)
        for path in (run.parent, run, run.parent / f"seed{k.seed}.log"):
            _check_inside(root, real_root, path)
    for k in keys:
        run = k.dir(root)
        if run.exists() and not run.is_dir():
            raise UserError(f"{run} exists and is not a directory; move it away")
        if run.is_dir() and not (run / "config.json").exists():
            foreign = sorted(p.name for p in run.iterdir() if p.name not in _BEFORE_CONFIG or not p.is_file()
                             or p.is_symlink())
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise UserError(f"{run} has no config.json but holds files that `workbench run` did not write "
                                f"({shown}); move them away, or remove the folder")


def _clear_unstarted(run: Path) -> None:
    """A run that died before writing its config.json: remove what it left, by name (checked
    by _check_paths to be nothing else), and keep the empty folder, which train accepts."""
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


def read_result(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def plan(spec: Spec, only: str | None = None) -> list[RunKey]:
    keys = [RunKey(v, s) for v in spec.variants for s in v.seeds]
    if only:
        keys = [k for k in keys if fnmatch.fnmatch(k.variant.name, only) or k.variant.name.startswith(only)]
        if not keys:
            names = ", ".join(v.name for v in spec.variants)
            raise UserError(f"--only {only!r} matches no variant; the variants are {names}")
    return keys


def init_dir(spec: Spec, key: RunKey, root: Path) -> Path | None:
    """The run a fine-tuning variant starts from: the source variant's run with the same seed,
    or its first seed when it has only some."""
    if not key.variant.init_from:
        return None
    src = spec.variant(key.variant.init_from)
    seed = key.seed if key.seed in src.seeds else src.seeds[0]
    return RunKey(src, seed).dir(root)


def _subprocess(args: list[str], log, threads: int) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.write(f"$ workbench {' '.join(args)}\n")
    log.flush()
    return subprocess.run([sys.executable, "-m", "experiments", *args], stdout=log, stderr=subprocess.STDOUT,
                          env=env).returncode


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


def execute(spec: Spec, key: RunKey, root: Path, threads: int, trackers: Sequence[str] = ()) -> dict:
    """Train (or resume) and evaluate one run; returns its result record (also written)."""
    run = key.dir(root)
    log_path = run.parent / f"seed{key.seed}.log"
    run.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    src = init_dir(spec, key, root)
    with open(log_path, "a", encoding="utf-8") as log:
        since = log.tell()
        error = ""
        if src is not None and (read_result(src) or {}).get("status") != "done":
            error = f"its init_from run {src} did not finish"
        elif not (run / ".trained").exists():
            if (run / "config.json").exists():
                args = ["train", "--resume", "--out", str(run), "--quiet"]
            else:
                _clear_unstarted(run)  # died before writing its config: nothing to keep
                args = train_args(key.variant, key.seed, run, src)
            args += tracker_args(spec.name, key.variant, key.seed, trackers)
            code = _subprocess(args, log, threads)
            if code == 0:
                atomic_write_text(run / ".trained", "")
            else:
                error = f"training exited with code {code}: {_tail(log_path, since)}"
        if not error:
            splits = _splits_of(run)
            for e in (e for e in spec.evals if e.split in splits):  # an eval applies where its split exists
                code = _subprocess(eval_args(e, run, run / f"eval-{e.name}.json"), log, threads)
                if code != 0:
                    error = f"eval {e.name!r} exited with code {code}: {_tail(log_path, since)}"
                    break
    result = {"variant": key.variant.name, "seed": key.seed, "status": "failed" if error else "done",
              "error": error, "wall_s": round(time.time() - started, 1)}
    run.mkdir(parents=True, exist_ok=True)  # a failure before training made it still gets a record
    atomic_write_text(run / "result.json", json.dumps(result, indent=1))
    return result


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def run_grid(spec: Spec, root: Path, only: str | None = None, dry_run: bool = False, trackers: Sequence[str] = (),
             jobs: int | None = None, echo=print, then: Callable[[], None] | None = None) -> list[dict]:
    """Run every (variant, seed) not yet done; print one line per run as the grid progresses.

    `then` (the report) runs while the output directory is still locked, so that a second runner
    cannot start between the last run and the report that reads it.
    """
    keys = plan(spec, only)
    jobs = jobs or spec.jobs
    root = Path(root)
    real_root = _real_root(root)
    _check_paths(spec, keys, root, real_root)  # before any folder is made (a dry run checks too)
    if dry_run:
        _dry_run(spec, keys, root, jobs, echo, trackers)
        return []
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / LOCK_NAME, f"output directory {root}"):
        # again, under the lock: whatever ran before us may have changed the folders
        _check_paths(spec, keys, root, _real_root(root))
        done = _run_locked(spec, keys, root, jobs, echo, trackers)
        if then is not None:
            then()
        return done


def _todo(spec: Spec, keys: list[RunKey], root: Path, jobs: int, echo) -> list[RunKey]:
    """The runs not done yet, announced in one line."""
    todo = [k for k in keys if (read_result(k.dir(root)) or {}).get("status") != "done"]
    echo(f"{spec.name}: {len(keys)} runs ({len(keys) - len(todo)} already done), {jobs} at a time, "
         f"budget {spec.budget_minutes:g} min -> {root}")
    return todo


def _dry_run(spec: Spec, keys: list[RunKey], root: Path, jobs: int, echo, trackers: Sequence[str] = ()) -> None:
    todo = _todo(spec, keys, root, jobs, echo)
    for k in keys:
        run = k.dir(root)
        state = ("done" if k not in todo else "resume" if (run / "config.json").exists() else "new")
        src = init_dir(spec, k, root)
        args = train_args(k.variant, k.seed, run, src) + tracker_args(spec.name, k.variant, k.seed, trackers)
        echo(f"  [{state:6}] workbench {' '.join(args)}")
    for e in spec.evals:
        echo(f"  then per run: workbench {' '.join(eval_args(e, Path('RUN'), Path('RUN') / f'eval-{e.name}.json'))}")


def _run_locked(spec: Spec, keys: list[RunKey], root: Path, jobs: int, echo,
                trackers: Sequence[str] = ()) -> list[dict]:
    todo = _todo(spec, keys, root, jobs, echo)
    if spec.path.resolve() != (root / "spec.toml").resolve():
        # atomic: `workbench report` reparses this copy, and a torn one would not load
        atomic_write_bytes(root / "spec.toml", spec.path.read_bytes())
        atomic_write_text(root / "spec.source", str(spec.path))  # for the report's "reproduce" line
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(todo))))  # a lone run gets every core
    lock = threading.Lock()
    start = time.time()
    done: list[dict] = []

    def work(k: RunKey, deps: list[Future]) -> dict:
        for d in deps:  # a fine-tuning run waits for the run it starts from
            d.result()
        res = execute(spec, k, root, threads, trackers)
        with lock:
            done.append(res)
            elapsed = time.time() - start
            left = elapsed / len(done) * (len(todo) - len(done))
            extra = f"  {res['error'][:160]}" if res["error"] else ""
            echo(f"[{len(done):>3}/{len(todo)}] {res['status']:6} {k.variant.name} seed {k.seed} "
                 f"({_fmt_s(res['wall_s'])}; elapsed {_fmt_s(elapsed)}, ~{_fmt_s(left)} left){extra}")
        return res

    futures: dict[RunKey, Future] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for k in todo:
            src = spec.variant(k.variant.init_from) if k.variant.init_from else None
            deps = [f for kk, f in futures.items() if src is not None and kk.variant == src]
            futures[k] = pool.submit(work, k, deps)
        for f in futures.values():
            f.result()
    total = time.time() - start
    with open(root / "timing.jsonl", "a", encoding="utf-8") as f:  # the report sums these
        f.write(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start)),
                            "elapsed_s": round(total, 1), "runs": len(done), "jobs": jobs}) + "\n")
    over = total / 60 > spec.budget_minutes
    echo(f"{spec.name}: {sum(r['status'] == 'done' for r in done)} done, "
         f"{sum(r['status'] == 'failed' for r in done)} failed in {_fmt_s(total)} "
         f"({'over' if over else 'within'} the {spec.budget_minutes:g}-minute budget)")
    return done
