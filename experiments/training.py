"""Training a run: a task's batches and evals handed to gpt's Trainer, in a locked run directory.

start_run trains a new run from its RunSpec; resume_run continues one from its checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.batches import batch_source
from experiments.build import build, position_ids
from experiments.curriculum import LevelSchedule, make_schedule, with_levels
from experiments.devices import resolve_device
from experiments.errors import USER_ERRNOS, TrainFailed, UserError
from experiments.evaluate import EVAL_SEED, accuracy
from experiments.finetune import init_from
from experiments.load import WEIGHTS, check_checkpoint
from experiments.outputs import refuse_protected
from experiments.rundir import INCLUDE_DIR, RunLock, copy_includes, is_run, read_config, write_config
from experiments.runspec import RunSpec, read_run_spec, to_record, with_train
from experiments.trackers import make_sinks
from gpt.atomic import remove_temp_files
from gpt.checkpoint import CheckpointError, check_metrics, load_checkpoint, state_mismatch
from gpt.distributed import Dist
from gpt.config import GPTConfig, TrainConfig
from gpt.faults import FaultSpecError
from gpt.model import GPT, rename_legacy_keys
from gpt.progress import TrainProgress
from gpt.protocols import BatchFn
from gpt.stopping import NonFiniteLoss
from gpt.train import Trainer, TrainingInterrupted, TrainState
from tasks.base import Task


@dataclass(frozen=True)
class TrainOptions:
    """How to run, not what: none of these changes what the run computes."""

    out: Path
    device: str = "auto"
    quiet: bool = False
    eval_n: int = 1000  # held-out problems scored at every eval (0: none)
    progress_mode: str | None = None
    log: tuple[str, ...] = ()  # experiment trackers that get every metrics record (trackers.SINKS)
    tags: tuple[str, ...] = ()  # KEY=VALUE labels for the trackers (a spec's name and variant)
    batch_workers: int | None = None  # processes building batches ahead (None: batches.auto_workers)
    trust_code: bool = False  # --resume: run the task code of a run not trained here (trust.py)


def make_eval_fn(task: Task, n: int, seed: int = 0):
    """val_acc on n fixed held-out problems at every eval; also train_acc for tasks whose
    training set is finite (e.g. modular, or any task.train_size), where the gap between the
    two is the point.  None for a task scored by its loss alone, which every eval reports."""
    if task.metric != "accuracy" or n <= 0:
        return None
    problems = next(iter(task.eval_problems(EVAL_SEED + 1, "test", n, chunk=n)))
    train = None
    if task.train_size:  # the run's own pool (or its first n problems)
        pool = task.train_pool(seed)
        train = pool.take(np.arange(min(n, len(pool))))
    elif task.finite_train:
        train = next(iter(task.eval_problems(EVAL_SEED + 1, "train", n, chunk=n)))

    def evaluate(model: GPT) -> dict[str, float]:
        out = {"val_acc": accuracy(model, task, problems)}
        if train is not None:
            out["train_acc"] = accuracy(model, task, train)
        return out

    return evaluate


def fits(model: torch.nn.Module, state: dict) -> str | None:
    """None if a checkpoint's weights load into model; else what does not fit (nothing is loaded)."""
    own, state = model.state_dict(), dict(state)
    rename_legacy_keys(state)  # as GPT's load_state_dict pre-hook does
    if set(own) == set(state) and all(getattr(state[k], "shape", None) == own[k].shape for k in own):
        return None
    return state_mismatch(model, state)


def compile_failed(e: BaseException) -> bool:
    """An error of torch.compile's machinery (dynamo, inductor), such as no C++ compiler to build
    its CPU kernels with: the environment's, not the run's, and train.compile=off avoids it."""
    return type(e).__module__.startswith(("torch._dynamo", "torch._inductor"))


def start_run(spec: RunSpec, opts: TrainOptions) -> Path:
    """Train a new run from spec into opts.out (absent or empty).  Under torchrun every rank
    calls this; rank 0 owns the run directory."""
    return _with_dist(opts, lambda dist, device: _start(spec, opts, dist, device))


def resume_run(out: Path, opts: TrainOptions, steps: int | None = None, target_acc: float | None = None) -> Path:
    """Continue the run in `out` from its checkpoint, with its own settings.  Only its stopping
    rules may change: `steps` extends (or shortens) it, `target_acc` replaces its target (0: never)."""
    return _with_dist(opts, lambda dist, device: _resume(Path(out), opts, steps, target_acc, dist, device))


def _with_dist(opts: TrainOptions, job: Callable[[Dist, torch.device], Path]) -> Path:
    dist = Dist.from_env()
    device = resolve_device(opts.device)
    if dist.enabled:
        if device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        dist.init(device.type)
    try:
        out = job(dist, device)
        # leave together: a rank that tears down while a peer's last collective is still
        # in flight can abort that peer (gloo)
        dist.barrier()
        return out
    finally:
        dist.shutdown()


def _start(spec: RunSpec, opts: TrainOptions, dist: Dist, device: torch.device) -> Path:
    out = Path(opts.out)
    if dist.is_main:  # a new run is never made inside another run or an exported folder
        refuse_protected(out, "--out")
    if dist.is_main and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; pass --resume to continue a run, or choose another --out")
    spec = dataclasses.replace(spec, world_size=dist.world)
    return _locked(out, spec, opts, None, dist, device, new=True)


def _resume(out: Path, opts: TrainOptions, steps: int | None, target_acc: float | None, dist: Dist,
            device: torch.device) -> Path:
    """Continue a run, or refuse: nothing in its folder changes until every check has passed."""
    if not is_run(out):
        raise UserError(f"--resume: {out} is not a run directory")
    if "export" in read_config(out) or (out / WEIGHTS).exists():
        raise UserError(f"--resume: {out} is an exported model folder, which train never writes; to train on "
                        f"from it, start a new run: workbench train --task TASK --init-from {out} --out NEW")
    spec, _ = read_run_spec(out, opts.trust_code)  # its include files are checked before they run
    changes = {k: v for k, v in (("steps", steps), ("target_acc", target_acc)) if v is not None}
    if changes:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, **changes))
    try:
        records = check_metrics(out / "metrics.jsonl")
    except ValueError as e:
        raise UserError(f"--resume: {e}; the run's log is damaged, so it cannot be continued") from None
    ckpt = None
    if (out / "ckpt.pt").exists():
        try:
            ckpt = load_checkpoint(out / "ckpt.pt", map_location=device)
        except CheckpointError as e:
            raise UserError(f"--resume: {e}") from None
    else:  # a run killed before its first checkpoint restarts from step 0; one that had one, never
        refuse_lost_history(out, records)
    return _locked(out, spec, opts, ckpt, dist, device, new=False, rewrite=bool(changes))


def refuse_lost_history(out: Path, records: list[dict]) -> None:
    """Refuse to restart from step 0 a run whose checkpoint is gone but whose history shows it had
    one: a best.pt, or log records past its first eval (a checkpoint is written at every eval)."""
    evals = [r["step"] for r in records if "val_loss" in r and r["step"] > 0]
    last = records[-1]["step"] if records else 0
    best = out / "best.pt"
    if not best.exists() and not (evals and last > evals[0]):
        return
    try:
        best_step = f" (step {load_checkpoint(best)['step']:,})" if best.exists() else ""
    except CheckpointError:
        best_step = " (unreadable)"
    have = f"metrics up to step {last:,}" + (f" and best.pt{best_step}" if best.exists() else "")
    how = (f"to continue from best.pt, copy it to {out / 'ckpt.pt'} and resume (the steps after it are trained "
           "again); " if best.exists() else "restore ckpt.pt from a backup; ") + "or train a new run with another --out"
    raise UserError(f"--resume: {out} has no ckpt.pt but has {have}; it is not restarted from step 0, which would "
                    f"discard them: {how}")


def _make_dir(out: Path) -> bool:
    """Create the run directory; True if this process made it (and so may remove it again)."""
    try:
        out.mkdir(parents=True)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        raise UserError(f"cannot create the run directory {out}: {e.strerror or e}") from None


def _locked(out: Path, spec: RunSpec, opts: TrainOptions, ckpt: dict | None, dist: Dist, device: torch.device,
            new: bool, rewrite: bool = False) -> Path:
    """Build the run, take its directory's lock (rank 0), and train.  A new run writes its
    config now (into a folder that was empty); a resumed one changes its folder only once
    every check has passed (`commit`, just before training)."""
    built = build(spec)
    _draw_pool(built.task, spec.seed)
    lock, created = _take_lock(out) if dist.is_main else (None, False)
    try:
        if dist.is_main and new:
            copies = copy_includes(out, spec.include)
            write_config(out, to_record(spec, built.task.vocab.chars, built.model, device, copies))
        commit = _no_commit
        if dist.is_main and not new:
            commit = functools.partial(_commit, out, spec.train, ckpt is None, rewrite)
        dist.barrier()  # the other ranks start once the run directory is ready
        return _train_locked(spec, opts, built.task, built.model, device, out, ckpt, dist, commit)
    except UserError:
        # a new run that could not start (a bad --init-from, say) leaves no half-made run
        # directory behind: it was empty or absent before, and is again
        if lock is not None and new and not (out / "ckpt.pt").exists():
            _unmake(out, created)
        raise
    finally:
        if lock is not None:
            lock.release()


def _draw_pool(task: Task, seed: int) -> None:
    """Draw a task.train_size pool now: one larger than the task has problems is a user error."""
    if task.train_size:
        try:
            task.train_pool(seed)
        except ValueError as e:
            raise UserError(f"{e}; lower task.train_size") from None


def _take_lock(out: Path) -> tuple[RunLock, bool]:
    """The run directory's lock, the directory made first if absent; and whether this process made it."""
    lock = RunLock(out)
    created = _make_dir(out)
    try:
        lock.acquire()
    except UserError:
        if created:  # rmdir: only while empty; a process that won the lock meanwhile keeps its folder
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return lock, created


def _unmake(out: Path, created: bool) -> None:
    """Undo a new run's start: its folder removed if this process made it, else emptied of the
    run's files again."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for name in ("config.json", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / INCLUDE_DIR, ignore_errors=True)


def _no_commit() -> None:
    """A new run's folder, and another rank's, have nothing to commit."""


def _commit(out: Path, train: TrainConfig, restart: bool, rewrite: bool) -> None:
    """A resumed run's changes to its folder, made once every check has passed (we hold its lock,
    so no writer is live): a killed writer's leftovers removed; for a restart from step 0 (no
    checkpoint) a fresh log; for a changed stopping rule, the record's train section."""
    remove_temp_files(out)
    if restart:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if rewrite:  # the record keeps its provenance
        write_config(out, with_train(read_config(out), train))


def _train_locked(spec: RunSpec, opts: TrainOptions, task: Task, model_cfg: GPTConfig, device: torch.device,
                  out: Path, ckpt: dict | None, dist: Dist, commit: Callable[[], None] = _no_commit) -> Path:
    """Train in a locked run directory: the model, its batches, evals and Trainer; then the
    checkpoint restored (a resume) or the run announced (a new one); then the loop."""
    model, init_note = _make_model(spec, task, model_cfg, device, ckpt)
    schedule = make_schedule(task, spec.train, opts.eval_n)
    batch, close_batches = _batch_source(spec, opts, task, model_cfg, device, dist, schedule)
    evaluate = with_levels(make_eval_fn(task, opts.eval_n, spec.seed), schedule)
    if spec.train.target_acc and evaluate is None:
        raise UserError(f"--target-acc needs a task with exact-match evaluation; {task.name!r} has none")
    progress = _progress(spec, opts, task, ckpt, dist)
    sinks = make_sinks(opts.log, out, read_config(out), opts.tags) if dist.is_main else []
    try:
        trainer = Trainer(model, spec.train, batch, out, device, spec.seed, evaluate,
                          meta={"task": task.name, "vocab": task.vocab.chars, "model": dataclasses.asdict(model_cfg)},
                          progress=progress, dist=dist, sinks=sinks, schedule=schedule)
    except FaultSpecError as e:
        progress.close()
        raise UserError(str(e)) from None
    if ckpt is not None:
        _restore(trainer, ckpt, task, out, progress)
    else:
        _announce(progress, task, model, spec.train, out, init_note, schedule)
    commit()
    state = _run(trainer, progress, out, close_batches)
    if not opts.quiet and dist.is_main:
        print(_done_line(state, spec.train, out))
    return out


def _make_model(spec: RunSpec, task: Task, model_cfg: GPTConfig, device: torch.device, ckpt: dict | None
                ) -> tuple[GPT, str]:
    """The run's model on `device`, and --init-from's note: a new run's weights come from the seed,
    or from the run it starts from; a resumed run's are loaded later, from its checkpoint."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(spec.seed)  # only the initial weights come from here
    model = GPT(model_cfg)
    init_note = ""
    if ckpt is None and spec.init_from:
        init_note = init_from(model, Path(spec.init_from), task.vocab.chars)
    return model.to(device), init_note


def _batch_source(spec: RunSpec, opts: TrainOptions, task: Task, model_cfg: GPTConfig, device: torch.device,
                  dist: Dist, schedule: LevelSchedule | None) -> tuple[BatchFn, Callable[[], None]]:
    """The loop's batch function (this rank's micro-batches, at the curriculum's level), and what closes it."""
    curriculum, level = (schedule.curriculum, lambda: schedule.level) if schedule else (None, lambda: 0)
    return batch_source(task, spec.seed, spec.train.drawn_rows, model_cfg.block_size, device, dist.rank,
                        spec.train.grad_accum, opts.batch_workers, position_ids(model_cfg), curriculum, level)


def _progress(spec: RunSpec, opts: TrainOptions, task: Task, ckpt: dict | None, dist: Dist) -> TrainProgress:
    """The run's progress line or bar (quiet on ranks other than 0), from its checkpoint's step."""
    mode = "quiet" if opts.quiet or not dist.is_main else opts.progress_mode
    start = int(ckpt["step"]) if ckpt else 0
    stop_at = f"val_acc ≥ {spec.train.target_acc:g}" if spec.train.target_acc else ""
    return TrainProgress(spec.train.steps, start, mode, title=task.name, stop_at=stop_at)


def _restore(trainer: Trainer, ckpt: dict, task: Task, out: Path, progress: TrainProgress) -> None:
    """Load a resumed run's checkpoint into the trainer, or refuse it in one line."""
    try:
        check_checkpoint(ckpt, task, trainer.model.config, out / "ckpt.pt")
        if (mismatch := fits(trainer.model, ckpt["model"])) is not None:
            raise UserError(f"--resume: {out / 'ckpt.pt'} does not fit the run's model: {mismatch}")
        trainer.load_state(ckpt)
    except ValueError as e:  # a schedule or optimizer state that does not fit this run
        progress.close()
        raise UserError(f"--resume: {out / 'ckpt.pt'}: {e}") from None
    except UserError:
        progress.close()
        raise
    progress.print(f"resuming {out} at step {trainer.state.step}")


def _announce(progress: TrainProgress, task: Task, model: GPT, train: TrainConfig, out: Path, init_note: str,
              schedule: LevelSchedule | None) -> None:
    """A new run's opening lines: where its weights come from, its size, its curriculum."""
    if init_note:
        progress.print(init_note)
    n_params = model.num_params()  # a tiny model's count in full: "0.00M" says nothing
    size = f"{n_params / 1e6:.2f}M" if n_params >= 100_000 else f"{n_params:,}"
    progress.print(f"{task.name}: {size} parameters, {train.steps} steps -> {out}")
    if schedule is not None:
        progress.print(f"curriculum: {len(schedule.curriculum)} levels, up at {schedule.threshold:.2%} accuracy on "
                       f"the level, {schedule.curriculum.replay:.0%} of each batch from earlier levels")


def _run(trainer: Trainer, progress: TrainProgress, out: Path, close_batches: Callable[[], None]) -> TrainState:
    """The loop, its batch workers closed after it; a stop the user should hear of, in one line."""
    try:
        state = trainer.run()
    except Exception as e:
        failure = _failure(e, out)
        if failure is None:
            raise
        progress.close()
        raise failure from None
    finally:
        close_batches()
    progress.close()
    return state


def _failure(e: Exception, out: Path) -> Exception | None:
    """What a run that stopped on its own says and exits with (TrainFailed, TrainFailedInterrupt);
    None for an error that is not the run's to explain (a bug: its traceback is the message)."""
    if isinstance(e, TrainingInterrupted):
        return TrainFailedInterrupt(e, out)
    if isinstance(e, NonFiniteLoss):
        return TrainFailed(
            f"training stopped: loss became {e.value} at step {e.step}; the last good checkpoint is "
            f"{out / 'ckpt.pt'}. Lower train.lr, or pass --set train.nan_policy=skip to skip such steps")
    if isinstance(e, OSError):
        return TrainFailed(f"training stopped: writing to {out} failed ({e}); the previous checkpoint is intact",
                           code=2 if e.errno in USER_ERRNOS else 1)
    if compile_failed(e):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return TrainFailed(
            f"training stopped: torch.compile failed ({first[:200]}); on the CPU it needs a working C++ "
            f"compiler. Pass --set train.compile=off to train without it", code=2)
    return None


def _done_line(state: TrainState, train: TrainConfig, out: Path) -> str:
    """The last line of a run: where it stopped, and why when not at its last step."""
    why = ""
    if state.stop == "target":
        why = f" (val_acc reached the target {train.target_acc:g})"
    elif state.stop == "time_budget":
        why = f" (the time budget of {train.time_budget_s:g} s is spent)"
    return f"done: {out} at step {state.step}{why}, best val loss {state.best_val:.4f}"


class TrainFailedInterrupt(TrainFailed):
    def __init__(self, e: TrainingInterrupted, out: Path):
        super().__init__(
            f"interrupted at step {e.step}; checkpoint saved. Resume with: workbench train --resume --out {out}",
            130 if e.signum == 2 else 143)
