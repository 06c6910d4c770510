"""`workbench run SPEC`: train and evaluate every variant x seed of a spec, resumably.

Layout of the output directory (default runs/spec-NAME):

    spec.toml                  a copy of the spec that made it
    VARIANT/seedS/             a run directory (config.json, metrics.jsonl, ckpt.pt, ...)
    VARIANT/seedS/eval-E.json  one accuracy (or loss) table per [[eval]]
    VARIANT/seedS/result.json  status: done | failed, wall time, error
    VARIANT/seedS.log          the run's stdout and stderr
    results.csv, results.md, *.png   written by experiments/results.py

Each run is a `workbench train` subprocess, then one `workbench eval` subprocess per
[[eval]], so a crash or a bad variant is recorded as failed and the grid goes on.
Re-running skips runs whose result.json says done, resumes runs that were interrupted
(their checkpoint is kept) and retries failed ones.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import UserError
from experiments.spec import Spec, Variant, eval_args, train_args
from gpt.checkpoint import atomic_write_text


@dataclass(frozen=True)
class RunKey:
    variant: Variant
    seed: int

    def dir(self, root: Path) -> Path:
        return root / self.variant.name / f"seed{self.seed}"


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
    from experiments.runs import read_config, task_class

    t = read_config(run)["task"]
    return tuple(task_class(t["name"], t.get("include", [])).splits)


def execute(spec: Spec, key: RunKey, root: Path, threads: int) -> dict:
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
                if run.exists():
                    shutil.rmtree(run)  # died before writing its config: nothing to keep
                args = train_args(key.variant, key.seed, run, src)
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


def run_grid(spec: Spec, root: Path, only: str | None = None, dry_run: bool = False,
             jobs: int | None = None, echo=print) -> list[dict]:
    """Run every (variant, seed) not yet done; print one line per run as the grid progresses."""
    keys = plan(spec, only)
    jobs = jobs or spec.jobs
    todo = [k for k in keys if (read_result(k.dir(root)) or {}).get("status") != "done"]
    echo(f"{spec.name}: {len(keys)} runs ({len(keys) - len(todo)} already done), {jobs} at a time, "
         f"budget {spec.budget_minutes:g} min -> {root}")
    if dry_run:
        for k in keys:
            run = k.dir(root)
            state = ("done" if k not in todo else "resume" if (run / "config.json").exists() else "new")
            src = init_dir(spec, k, root)
            echo(f"  [{state:6}] workbench {' '.join(train_args(k.variant, k.seed, run, src))}")
        for e in spec.evals:
            echo(f"  then per run: workbench {' '.join(eval_args(e, Path('RUN'), Path('RUN') / f'eval-{e.name}.json'))}")
        return []
    root.mkdir(parents=True, exist_ok=True)
    if spec.path.resolve() != (root / "spec.toml").resolve():
        shutil.copyfile(spec.path, root / "spec.toml")
        atomic_write_text(root / "spec.source", str(spec.path))  # for the report's "reproduce" line
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(todo))))  # a lone run gets every core
    lock = threading.Lock()
    start = time.time()
    done: list[dict] = []

    def work(k: RunKey, deps: list[Future]) -> dict:
        for d in deps:  # a fine-tuning run waits for the run it starts from
            d.result()
        res = execute(spec, k, root, threads)
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
