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
[[eval]] (runjob.py), so a crash or a bad variant is recorded as failed and the grid goes on.
Re-running skips runs whose result.json says done, resumes runs that were interrupted
(their checkpoint is kept) and retries failed ones; `retries` retries a failed run at once.

This module decides what runs and when; an executor (executors.py: a local pool, or Ray)
only runs each job.  A fine-tuning run is handed over once the run it starts from is done.

Specs come from anyone, so before it makes or removes anything the runner checks that every
path it will write (run folders, their logs, the files at the top) lies inside the output
directory with no symbolic link on the way, and it never deletes a tree: a run that died
before writing its config.json leaves only files of known names, and those are removed by
name (anything else in that folder stops the run, naming it).
"""

from __future__ import annotations

import fnmatch
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from experiments.errors import UserError
from experiments.executors import Executor, LocalExecutor
from experiments.runjob import (BEFORE_CONFIG, Job, RunKey, exclusive_lock, execute, init_dir, read_result,
                                write_result)
from experiments.spec import Spec, eval_args, tracker_args, train_args
from gpt.atomic import atomic_write_bytes, atomic_write_text

LOCK_NAME = ".run.lock"


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
            foreign = sorted(p.name for p in run.iterdir() if p.name not in BEFORE_CONFIG or not p.is_file()
                             or p.is_symlink())
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise UserError(f"{run} has no config.json but holds files that `workbench run` did not write "
                                f"({shown}); move them away, or remove the folder")


def plan(spec: Spec, only: str | None = None) -> list[RunKey]:
    keys = [RunKey(v, s) for v in spec.variants for s in v.seeds]
    if only:
        # an exact name selects that variant alone: `pos.coupled` must not pull in `pos.coupled_rel`
        exact = [k for k in keys if k.variant.name == only]
        keys = exact or [k for k in keys if fnmatch.fnmatch(k.variant.name, only) or k.variant.name.startswith(only)]
        if not keys:
            names = ", ".join(v.name for v in spec.variants)
            raise UserError(f"--only {only!r} matches no variant; the variants are {names}")
    return keys


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def run_grid(spec: Spec, root: Path, only: str | None = None, dry_run: bool = False, trackers: Sequence[str] = (),
             jobs: int | None = None, echo=print, then: Callable[[], None] | None = None,
             executor: Callable[[], Executor] | None = None, timeout_s: float | None = None,
             retries: int = 0) -> list[dict]:
    """Run every (variant, seed) not yet done; print one line per run as the grid progresses.

    `executor` makes the executor once the output directory is locked (default: a local pool of
    `jobs`, else the spec's `jobs`, runs at a time).  `timeout_s` bounds each attempt; a failed
    attempt is retried up to `retries` times (it resumes from its checkpoint).  `then` (the
    report) runs while the output directory is still locked, so that a second runner cannot
    start between the last run and the report that reads it.
    """
    keys = plan(spec, only)
    root = Path(root).absolute()  # the executor's processes may start in another folder
    real_root = _real_root(root)
    _check_paths(spec, keys, root, real_root)  # before any folder is made (a dry run checks too)
    if dry_run:
        _dry_run(spec, keys, root, echo, trackers)
        return []
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / LOCK_NAME, f"output directory {root}"):
        # again, under the lock: whatever ran before us may have changed the folders
        _check_paths(spec, keys, root, _real_root(root))
        ex = executor() if executor is not None else LocalExecutor(jobs or spec.jobs)
        try:
            done = _run_locked(spec, keys, root, ex, echo, trackers, timeout_s, retries, only)
        finally:
            ex.close()
        if then is not None:
            then()
        return done


def _todo(keys: list[RunKey], root: Path) -> list[RunKey]:
    return [k for k in keys if (read_result(k.dir(root)) or {}).get("status") != "done"]


def _summary(spec: Spec, keys: list[RunKey], todo: list[RunKey], root: Path, how: str = "") -> str:
    return (f"{spec.name}: {len(keys)} runs ({len(keys) - len(todo)} already done), {how + ', ' if how else ''}"
            f"budget {spec.budget_minutes:g} min -> {root}")


def _dry_run(spec: Spec, keys: list[RunKey], root: Path, echo, trackers: Sequence[str] = ()) -> None:
    todo = _todo(keys, root)
    echo(_summary(spec, keys, todo, root))
    for k in keys:
        run = k.dir(root)
        state = ("done" if k not in todo else "resume" if (run / "config.json").exists() else "new")
        src = init_dir(spec, k, root)
        args = train_args(k.variant, k.seed, run, src) + tracker_args(spec.name, k.variant, k.seed, trackers)
        echo(f"  [{state:6}] workbench {' '.join(args)}")
    for e in spec.evals:
        echo(f"  then per run: workbench {' '.join(eval_args(e, Path('RUN'), Path('RUN') / f'eval-{e.name}.json'))}")


def _run_locked(spec: Spec, keys: list[RunKey], root: Path, ex: Executor, echo, trackers: Sequence[str],
                timeout_s: float | None, retries: int, only: str | None = None) -> list[dict]:
    todo = _todo(keys, root)
    echo(_summary(spec, keys, todo, root, ex.describe()))
    if spec.path.resolve() != (root / "spec.toml").resolve():
        # atomic: `workbench report` reparses this copy, and a torn one would not load
        atomic_write_bytes(root / "spec.toml", spec.path.read_bytes())
        atomic_write_text(root / "spec.source", str(spec.path))  # for the report's "reproduce" line
    lock = threading.Lock()
    start = time.time()
    done: list[dict] = []

    def job(k: RunKey) -> Job:
        return Job(spec, k, root, ex.threads(k.variant.run.resources.num_cpus, len(todo)), tuple(trackers),
                   timeout_s)

    def report(k: RunKey, res: dict, attempt: int) -> None:
        with lock:
            final = res["status"] == "done" or attempt >= retries
            if final:
                done.append(res)
            elapsed = time.time() - start
            left = elapsed / max(1, len(done)) * (len(todo) - len(done))
            extra = f"  {res['error'][:160]}" if res["error"] else ""
            status = res["status"] if final else f"retry {attempt + 1}/{retries}"
            echo(f"[{len(done):>3}/{len(todo)}] {status:6} {k.variant.name} seed {k.seed} "
                 f"({_fmt_s(res['wall_s'])}; elapsed {_fmt_s(elapsed)}, ~{_fmt_s(left)} left){extra}")

    # A fine-tuning run is handed over once the run it starts from has ended (done or failed:
    # execute records a failed source as the reason it could not start).
    waiting = list(todo)
    running: dict[Future, tuple[RunKey, int]] = {}

    def ready(k: RunKey) -> bool:
        src = init_dir(spec, k, root)
        return src is None or all(kk.dir(root) != src for kk in [*waiting, *(r[0] for r in running.values())])

    while waiting or running:
        for k in [k for k in waiting if ready(k)]:
            waiting.remove(k)
            running[ex.submit(execute, job(k))] = (k, 0)
        if not running:  # cannot happen: init_from only names earlier variants
            raise RuntimeError(f"no run can start: {[k.variant.name for k in waiting]}")
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in finished:
            k, attempt = running.pop(f)
            try:
                res = f.result()
            except Exception as e:  # the executor lost it (a Ray worker died) or cannot place it: record, retry
                res = {"variant": k.variant.name, "seed": k.seed, "status": "failed",
                       "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", "wall_s": 0.0}
                write_result(k.dir(root), res)
            report(k, res, attempt)
            if res["status"] != "done" and attempt < retries:
                running[ex.submit(execute, job(k))] = (k, attempt + 1)
    total = time.time() - start
    with open(root / "timing.jsonl", "a", encoding="utf-8") as f:  # the report sums these
        f.write(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start)),
                            "elapsed_s": round(total, 1), "runs": len(done), "how": ex.describe(),
                            "only": only}) + "\n")  # the report's "reproduce" line repeats --only
    over = total / 60 > spec.budget_minutes
    echo(f"{spec.name}: {sum(r['status'] == 'done' for r in done)} done, "
         f"{sum(r['status'] == 'failed' for r in done)} failed in {_fmt_s(total)} "
         f"({'over' if over else 'within'} the {spec.budget_minutes:g}-minute budget)")
    return done

