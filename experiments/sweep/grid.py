"""`workbench run SPEC`: train and evaluate every variant x seed of a spec, resumably.

Layout of the output directory (default runs/spec-NAME):

    spec.toml                  a copy of the spec that made it
    .run.lock                  flock'ed by the `workbench run` writing it (one at a time)
    VARIANT/seedS/             a run directory (config.json, metrics.jsonl, ckpt.pt, ...)
    VARIANT/seedS/eval-E.json  one accuracy (or loss) table per [[eval]]
    VARIANT/seedS/result.json  status: done | failed, wall time, error
    VARIANT/seedS.log          the run's stdout and stderr
    VARIANT/.seedS.run-spec.json  a new run's RunSpec, for its train process to read (runjob.py)
    results.csv, results.md, *.png   written by results.py

Each run is a `workbench train` subprocess, then one `workbench eval` subprocess per
[[eval]] (runjob.py), so a crash or a bad variant is recorded as failed and the grid goes on.
Re-running skips runs whose result.json says done, resumes runs that were interrupted
(their checkpoint is kept) and retries failed ones; `retries` retries a failed run at once.
A result.json that is not such a record (read_run_result) counts as not done: the run is redone
and its record rewritten.  Planning is linear in the number of runs (spectypes.MAX_RUNS at most).

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
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from experiments.errors import UserError
from experiments.sweep.executors import Executor, LocalExecutor
from experiments.sweep.runjob import (BEFORE_CONFIG, Job, RunKey, eval_args, exclusive_lock, execute, init_dir,
                                      tracker_args, train_args, write_result)
from experiments.sweep.spectypes import Spec
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
    # all of them: a run of --only may read from (init_from) any other.  A run's run-spec record
    # (runjob.run_spec_file) needs no check of its own: it is written atomically, a rename over
    # whatever is there (never through a link), into run.parent, checked here
    for k in plan(spec):
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
    """The spec's runs (variant x seed) in order; with `only`, those of one variant (an exact name),
    else of the variants it prefixes or glob-matches.  An empty `only` is refused: it would
    prefix-match, and so select, every variant."""
    keys = [RunKey(v, s) for v in spec.variants for s in v.seeds]
    if only is not None:
        if not only.strip():
            raise UserError(f"--only {only!r} is empty; name a variant, a prefix or a glob "
                            f"(the variants are {_some_names(spec)})")
        # an exact name selects that variant alone: `pos.coupled` must not pull in `pos.coupled_rel`
        exact = [k for k in keys if k.variant.name == only]
        keys = exact or [k for k in keys if fnmatch.fnmatch(k.variant.name, only) or k.variant.name.startswith(only)]
        if not keys:
            raise UserError(f"--only {only!r} matches no variant; the variants are {_some_names(spec)}")
    return keys


def _some_names(spec: Spec, most: int = 20) -> str:
    """The variants' names for an error line: the first `most`, and how many more."""
    names = [v.name for v in spec.variants]
    return ", ".join(names[:most]) + (f" and {len(names) - most:,} more" if len(names) > most else "")


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


def read_run_result(run: Path) -> dict[str, Any] | None:
    """RUN/result.json, checked: None when there is none; UserError naming the file when it is not
    the record runjob.write_result makes ({"status": "done" | "failed", "error": "...",
    "wall_s": seconds, "variant", "seed"}).  Every reader of result.json here uses it."""
    path = run / "result.json"
    res = read_json(path)
    why = None if res is None else _result_problem(res)
    if why:
        raise UserError(f"{path}: {why}; remove it and `workbench run` redoes what the run lacks")
    return res


def _result_problem(res: Any) -> str | None:
    if not isinstance(res, dict):
        return f"expected a JSON object, got {json_type(res)}"
    if res.get("status") not in ("done", "failed"):
        return f'"status" must be "done" or "failed", got {json_short(res.get("status"))}'
    for key, types, what in (("error", str, "a string"), ("variant", str, "a string"),
                             ("seed", int, "an integer"), ("wall_s", (int, float), "a number of seconds")):
        v = res.get(key, "" if types is str else 0)
        if not isinstance(v, types) or isinstance(v, bool):
            return f'"{key}" must be {what}, got {json_short(v)}'
    if not 0 <= res.get("wall_s", 0) < math.inf:
        return f'"wall_s" must be a number of seconds, got {res["wall_s"]}'
    return None


def read_json(path: Path) -> Any:
    """A JSON file's value, or None when there is no such file; UserError naming the file (and
    line) when it cannot be read as UTF-8 JSON."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise UserError(f"{path}: cannot be read: {e.strerror}") from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:  # json nests recursively too: thousands of [ are refused, not a crash
        raise UserError(f"{path}: not a record workbench writes (JSON nested too deep)") from None


def json_type(value: Any) -> str:
    """A JSON value's kind, for an error line: "an array", "a string", ..."""
    kinds = ((bool, "a boolean"), (dict, "an object"), (list, "an array"), (str, "a string"),
             ((int, float), "a number"))
    return next((name for t, name in kinds if isinstance(value, t)), "null")


def json_short(value: Any) -> str:
    """A JSON value as JSON, cut short for an error line."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:50] + "..."


def _done(run: Path) -> bool:
    try:
        res = read_run_result(run)
    except UserError:  # a damaged record: the run is redone, and its new record replaces it
        return False
    return res is not None and res["status"] == "done"


def _todo(keys: list[RunKey], root: Path) -> list[RunKey]:
    return [k for k in keys if not _done(k.dir(root))]


def _summary(spec: Spec, keys: list[RunKey], todo: list[RunKey], root: Path, how: str = "") -> str:
    return (f"{spec.name}: {len(keys)} runs ({len(keys) - len(todo)} already done), {how + ', ' if how else ''}"
            f"budget {spec.budget_minutes:g} min -> {root}")


def _dry_run(spec: Spec, keys: list[RunKey], root: Path, echo, trackers: Sequence[str] = ()) -> None:
    todo = _todo(keys, root)
    pending = set(todo)  # a set: `k in todo` on the list made a dry run quadratic in the runs
    echo(_summary(spec, keys, todo, root))
    for k in keys:
        run = k.dir(root)
        state = ("done" if k not in pending else "resume" if (run / "config.json").exists() else "new")
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

    _schedule(spec, todo, root, ex, job, report, retries)
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


def _schedule(spec: Spec, todo: list[RunKey], root: Path, ex: Executor, job: Callable[[RunKey], Job],
              report: Callable[[RunKey, dict, int], None], retries: int) -> None:
    """Hand every run to the executor and wait for them all; a failed attempt is retried up to
    `retries` times.  A fine-tuning run is handed over once the run it starts from has ended
    (done or failed: execute records a failed source as the reason it could not start)."""
    waiting = list(todo)
    running: dict[Future, tuple[RunKey, int]] = {}
    unfinished = {k.dir(root) for k in todo}  # a set: one lookup per run, not a scan of the others

    def ready(k: RunKey) -> bool:
        src = init_dir(spec, k, root)
        return src is None or src not in unfinished

    while waiting or running:
        later = []
        for k in waiting:
            if ready(k):
                running[ex.submit(execute, job(k))] = (k, 0)
            else:
                later.append(k)
        waiting = later
        if not running:  # cannot happen: init_from only names earlier variants
            raise RuntimeError(f"no run can start: {[k.variant.name for k in waiting]}")
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in finished:
            k, attempt = running.pop(f)
            res = _outcome(f, k, root)
            report(k, res, attempt)
            if res["status"] != "done" and attempt < retries:
                running[ex.submit(execute, job(k))] = (k, attempt + 1)
            else:
                unfinished.discard(k.dir(root))


def _outcome(f: Future, k: RunKey, root: Path) -> dict:
    """A finished attempt's result record; one the executor lost (a Ray worker died) or could not
    place is recorded failed, with why."""
    try:
        return f.result()
    except Exception as e:  # noqa: BLE001 - any failure of the attempt is the run's, recorded
        res = {"variant": k.variant.name, "seed": k.seed, "status": "failed",
               "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", "wall_s": 0.0}
        write_result(k.dir(root), res)
        return res
