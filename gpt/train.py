"""The training loop: AdamW, warmup + cosine LR, clipping, accumulation, exact resume.

    Trainer.run -> _loop: while no stop rule holds (gpt/stopping.py):
        train_step   one optimizer update: forward and backward over the micro-batches' parts
                     (gpt/packing.py; with train.hard_pool, the hardest rows of a larger draw:
                     hardest_rows), the NaN policy, the optimizer step
        _step_record what the step logs (every log_interval steps)
        _evaluate_*  at an eval: losses, the task's metrics, the stop rule that ended it, a checkpoint

The loop knows nothing about tasks (gpt/protocols.py).  It is handed
  - `batch(split, step, micro) -> (x, y)`: a pure function, so resuming at
    step s replays exactly the batches an uninterrupted run would have seen;
  - `evaluate(model) -> dict`: extra metrics at each eval (e.g. val_acc).
Dropout, the only other randomness, is reseeded from (seed, step) every step,
so there is no RNG state to save.  WORKBENCH_FAULT kills a run at a chosen point (gpt/faults.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from gpt.checkpoint import MetricsLog, save_checkpoint
from gpt.config import TrainConfig
from gpt.distributed import Dist
from gpt.faults import KillPoints, die
from gpt.model import GPT, IGNORE_INDEX
from gpt.packing import batch_parts
from gpt.protocols import BatchFn, EvalFn, MetricSink, Schedule
from gpt.stopping import keep_update, out_of_time, reached_target, stop_reason

EVAL_STEP_BASE = 1 << 40  # eval batches use step ids no training step ever reaches


def lr_at(step: int, cfg: TrainConfig, train_time: float = 0.0) -> float:
    """nanoGPT's schedule: linear warmup, cosine decay to min_lr, then flat.

    With a time budget the decay runs over whichever ends first, the steps or the budget (the
    training time spent so far, `train_time`, against train.time_budget_s): a run the budget
    stops ends at min_lr, as one that runs out of steps does.  Its learning rates then depend on
    the machine's speed, as its last step always did."""
    decay = cfg.lr_decay_steps or cfg.steps
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    ratio = (step - cfg.warmup_steps) / max(1, decay - cfg.warmup_steps)
    if cfg.time_budget_s > 0:
        ratio = max(ratio, train_time / cfg.time_budget_s)
    if ratio >= 1:
        return cfg.min_lr
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (>= 2 dims), not on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused kernels exist for CUDA and (since torch 2.4) CPU; one kernel per step instead of
    # a Python loop over parameters is the single biggest overhead cut for small models
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; fp32 elsewhere (bf16 is slower than fp32 on this CPU)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc's; musl, macOS and Windows have none
    except (AttributeError, OSError, TypeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's malloc_trim(0); elsewhere nothing).

    An eval allocates far more at once than a training step: decoding 1,000 held-out problems in
    one batch makes KV caches and activations of up to 16 MB a tensor with the default addition
    model, and a checkpoint is serialised into a buffer and copied. glibc serves such blocks from
    mmap only until the first one is freed; from then on its thresholds rise (mmap to the freed
    size, trim to twice that), blocks of that size come from the heap, and freeing them leaves
    the heap's top resident unless it exceeds the trim threshold. So each eval left 0-30 MB of
    freed heap resident, as its last frees happened to fall, and RSS sat at one of several levels
    up to ~45 MB apart until the next eval, while the bytes in use stayed flat: a 20,000-step
    run's RSS "grew" 9.7% with nothing leaking. Trimmed after every eval, RSS between evals is
    the training step's own working set (tests/test_long_runs.py)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@torch.no_grad()
def hardest_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, keep: int) -> torch.Tensor:
    """train.hard_pool: the indices of the `keep` rows of a drawn pool (x, y) with the highest
    mean loss over their targets, in the pool's order (online hard-example mining: Loshchilov & Hutter 2015,
    Shrivastava et al. 2016).  A row without targets has loss 0.  The scoring pass runs in
    eval mode (no dropout), so which rows are kept depends on the weights alone."""
    was_training = model.training
    model.eval()
    logits, _ = model(x)  # (N, T, V)
    model.train(was_training)
    loss = F.cross_entropy(logits.transpose(1, 2).float(), y, ignore_index=IGNORE_INDEX, reduction="none")  # (N, T)
    row = loss.sum(1) / (y != IGNORE_INDEX).sum(1).clamp(min=1)  # (N,)
    return row.topk(keep).indices.sort().values


def step_seed(seed: int, step: int) -> int:
    # a Python int before the shift: numpy 1.x has no uint64 >> int (it would cast to float)
    return int(np.random.SeedSequence([seed, 0xD0, step]).generate_state(1, np.uint64)[0]) >> 1


class TrainingInterrupted(Exception):
    def __init__(self, signum: int, step: int):
        super().__init__(f"interrupted by signal {signum} at step {step}")
        self.signum, self.step = signum, step


@dataclass
class TrainState:
    step: int = 0  # optimizer updates done
    best_val: float = float("inf")
    skipped: int = 0
    train_time: float = 0.0  # seconds spent in training steps (evals excluded), across resumes
    stop: str = ""  # why the run ended: steps | target | time_budget ("" while it runs); not saved


class _NoLog:
    """Metrics sink for ranks other than 0."""

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        return []
    def append(self, record: dict[str, Any]) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class StepResult:
    """One optimizer update, as the loop logs it."""

    loss: torch.Tensor  # the step's mean loss (over ranks, under DDP); a 0-dim tensor on the device
    lr: float
    finite: bool  # False: the update was skipped (nan_policy=skip)
    tokens: int  # target positions computed, padding included


@dataclass
class _Meter:
    """Throughput since the last logged record: tokens computed, and when it was logged."""

    tokens: int = 0
    since: float = field(default_factory=time.perf_counter)

    def restart(self, now: float | None = None) -> None:
        self.tokens, self.since = 0, time.perf_counter() if now is None else now


def eval_due(step: int, cfg: TrainConfig, spent: bool) -> bool:
    """Whether the loop evaluates after update `step`: every eval_interval steps, and at the
    end, whether the steps or the time budget (`spent`) end it."""
    return step % cfg.eval_interval == 0 or step == cfg.steps or spent


class Trainer:
    """Runs `cfg.steps` optimizer updates, evaluating and checkpointing every eval_interval."""

    def __init__(
        self,
        model: GPT,
        cfg: TrainConfig,
        batch: BatchFn,
        out_dir: Path,
        device: torch.device,
        seed: int = 0,
        evaluate: EvalFn | None = None,
        meta: dict[str, Any] | None = None,
        progress=None,
        dist: Dist = Dist(),
        sinks: Sequence[MetricSink] = (),
        schedule: Schedule | None = None,
    ):
        self.model, self.cfg, self.batch, self.device = model, cfg, batch, device
        self.schedule = schedule
        self.out_dir, self.seed, self.evaluate = Path(out_dir), seed, evaluate
        self.meta = meta or {}
        self.dist = dist
        self.progress = progress if dist.is_main else None
        self.optimizer = make_optimizer(model, cfg)
        self.state = TrainState()
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl") if dist.is_main else _NoLog()
        self.sinks = list(sinks) if dist.is_main else []
        use_compile = cfg.compile == "on" or (cfg.compile == "auto" and device.type == "cuda")
        self.eval_fwd = torch.compile(model) if use_compile else model
        self.ddp = None
        if dist.enabled:
            # DDP all-reduces gradients during backward; the batch function hands each rank
            # its own micro-batches, so ranks never see the same data
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=ids)
            self.fwd = torch.compile(self.ddp) if use_compile else self.ddp
        else:
            self.fwd = self.eval_fwd
        self._signal: int | None = None
        self._resumed: dict[str, Any] = {}
        self._kill = KillPoints.from_env()  # once, here: never a lookup per step

    # ---- checkpoints -------------------------------------------------------------------
    def state_payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),  # the unwrapped model: no _orig_mod. prefix
            "optimizer": self.optimizer.state_dict(),
            "step": self.state.step,
            "best_val": self.state.best_val,
            "skipped": self.state.skipped,
            "train_time": self.state.train_time,
            "config": self.meta,
            **({"schedule": self.schedule.state_dict()} if self.schedule is not None else {}),
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state = TrainState(int(ckpt["step"]), float(ckpt["best_val"]), int(ckpt.get("skipped", 0)),
                                float(ckpt.get("train_time", 0.0)))
        if self.schedule is not None:
            self.schedule.load_state_dict(ckpt.get("schedule", {}))
        kept = self.metrics.truncate_after(self.state.step)
        # the checkpoint's own eval, if it was saved at one: a run that had reached its target
        # when it was saved stops again at once instead of training past it
        self._resumed = kept[-1] if kept and kept[-1].get("step") == self.state.step else {}

    def save(self, best: bool = False) -> None:
        if not self.dist.is_main:
            return
        payload = self.state_payload()
        self.metrics.sync()
        for sink in self.sinks:
            sink.flush()
        before_replace = die if self.state.step == self._kill.ckpt else None
        save_checkpoint(self.out_dir / "ckpt.pt", payload, before_replace=before_replace)
        if best:
            save_checkpoint(self.out_dir / "best.pt", payload)

    # ---- evaluation --------------------------------------------------------------------
    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for split, key in (("train", "train_loss"), ("val", "val_loss")):
            losses = torch.zeros(self.cfg.eval_iters)
            for i in range(self.cfg.eval_iters):
                x, y = self.batch(split, EVAL_STEP_BASE + i, 0)
                with autocast_for(self.device):
                    _, loss = self.eval_fwd(x, y)
                losses[i] = loss.float()
            out[key] = float(losses.mean())
        if self.state.step == self._kill.eval:
            die()
        if self.evaluate is not None:
            out.update(self.evaluate(self.model))
        self.model.train()
        return out

    # ---- the step ----------------------------------------------------------------------
    def train_step(self, train_time: float) -> StepResult:
        """One optimizer update, the state's step + 1; its time goes into state.train_time.
        train_time: rank 0's training time so far, which a time budget's schedule reads (lr_at)."""
        start = time.perf_counter()
        st, cfg = self.state, self.cfg
        step = st.step
        lr = lr_at(step, cfg, train_time)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        if self.model.config.dropout > 0:
            torch.manual_seed(step_seed(self.seed, step))
        loss, tokens = self._forward_backward(step)
        if step + 1 == self._kill.step:
            die()
        loss = self._agree(loss)
        finite = self._update(step, loss)
        st.step += 1
        st.train_time += time.perf_counter() - start
        return StepResult(loss, lr, finite, tokens)

    def _forward_backward(self, step: int) -> tuple[torch.Tensor, int]:
        """Gradients of the step's micro-batches, each cut into parts (batch_parts), accumulated:
        the step's mean loss, and the target positions computed."""
        cfg = self.cfg
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        for micro in range(cfg.grad_accum):
            x, y = self.batch("train", step, micro)  # cfg.drawn_rows rows
            if cfg.hard_pool > 1:
                with autocast_for(self.device):
                    rows = hardest_rows(self.eval_fwd, x, y, cfg.batch_size)
                x, y = x[rows], y[rows]
            parts = batch_parts(x, y, cfg)
            for c, (xc, yc, share, segments) in enumerate(parts):
                tokens += yc.numel()  # x may carry position ids beside the tokens
                last = micro == cfg.grad_accum - 1 and c == len(parts) - 1
                with autocast_for(self.device), self._grad_sync(last):
                    _, loss = self.fwd(xc, yc, segments=segments)
                    (loss * share / cfg.grad_accum).backward()
                loss_sum += loss.detach() * share
        return loss_sum / cfg.grad_accum, tokens

    def _grad_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Under DDP, gradients are all-reduced on the last backward of the step only."""
        return contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync()

    def _agree(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss every rank decides on: under DDP the ranks' mean, and a signal any rank got
        becomes every rank's, so that all take the same decisions."""
        if not self.dist.enabled:
            return loss
        shared = self.dist.all_sum(torch.stack([loss.float(), torch.tensor(
            float(self._signal is not None), device=self.device)]))
        if shared[1] > 0 and self._signal is None:
            self._signal = signal.SIGTERM
        return shared[0] / self.dist.world

    def _update(self, step: int, loss: torch.Tensor) -> bool:
        """The optimizer step, or a skipped one (the NaN policy); whether the loss was finite.

        On CUDA the loss is checked only on logged steps (reading it waits for the device); on
        the CPU and under DDP, on every step."""
        cfg = self.cfg
        check = self.device.type == "cpu" or self.dist.enabled or (step + 1) % cfg.log_interval == 0
        finite = bool(torch.isfinite(loss)) if check else True
        if keep_update(finite, loss, step + 1, cfg):
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
        else:
            self.state.skipped += 1
        self.optimizer.zero_grad(set_to_none=True)
        return finite

    # ---- the loop ----------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._signal = signum

    def run(self) -> TrainState:
        cfg, model = self.cfg, self.model
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for sink in self.sinks:
                sink.open(self.state.step)
            return self._loop(cfg, model)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.metrics.close()
            for sink in self.sinks:
                sink.close()

    def _log(self, record: dict[str, Any]) -> None:
        self.metrics.append(record)
        for sink in self.sinks:
            sink.log(record)

    def _loop(self, cfg: TrainConfig, model: GPT) -> TrainState:
        """Steps until a stop rule holds; each eval checks the target, and the state says which rule ended it."""
        model.train()
        st = self.state
        reached = self._start()
        meter = _Meter()
        # with a time budget, rank 0's clock decides for every rank both the stop and the schedule
        elapsed = self._elapsed(st.train_time)
        while not (why := stop_reason(cfg, st.step, out_of_time(elapsed, cfg), reached)):
            done = self.train_step(elapsed)
            meter.tokens += done.tokens
            elapsed = self._elapsed(st.train_time)
            spent = out_of_time(elapsed, cfg)
            do_eval = eval_due(st.step, cfg, spent)
            record = self._step_record(done, meter, do_eval)
            if do_eval:
                record = self._evaluate_main(record, spent)
                reached = self.dist.broadcast_flag(record.get("stop") == "target", self.device)
                meter.restart()  # eval time is not training time
            elif len(record) > 1:
                self._log(record)
            if self.progress:
                self.progress.update(st.step, record)
            self._stop_if_signalled(saved=do_eval)
        st.stop = why
        return st

    def _start(self) -> bool:
        """The eval a run starts from: a new run's at step 0, a resumed run's from its log (a
        checkpoint saved at an eval).  Whether it met the target, as rank 0 says."""
        if self.state.step == 0:
            reached = self._evaluate_main({"step": 0, **self._fields()}).get("stop") == "target"
        else:
            reached = reached_target(self._resumed, self.cfg)
        return self.dist.broadcast_flag(reached, self.device)

    def _step_record(self, done: StepResult, meter: _Meter, do_eval: bool) -> dict[str, Any]:
        """What a step logs: its number, a skipped update's reason, and on logged steps (every
        log_interval, and every eval) the loss, the lr and the throughput since the last one."""
        st, cfg = self.state, self.cfg
        record: dict[str, Any] = {"step": st.step}
        if not done.finite:
            record["skipped"] = f"non-finite loss {float(done.loss)}"
        if st.step % cfg.log_interval == 0 or do_eval:
            now = time.perf_counter()
            dt = now - meter.since
            record.update(
                loss=round(float(done.loss), 6), lr=done.lr,
                tokens_per_s=round(meter.tokens / dt, 1), ms_per_step=round(1000 * dt / cfg.log_interval, 3),
                train_time=round(st.train_time, 3), **self._fields(),
            )
            meter.restart(now)
        return record

    def _stop_if_signalled(self, saved: bool) -> None:
        """A SIGINT or SIGTERM ends the run after the step it arrived in, checkpointed (`saved`:
        this step's eval already was)."""
        if self._signal is None:
            return
        if not saved:
            self.save()
        raise TrainingInterrupted(self._signal, self.state.step)

    def _fields(self) -> dict[str, Any]:
        """What the schedule logs with each record: the state the step just trained with."""
        return self.schedule.fields() if self.schedule is not None else {}

    def _elapsed(self, train_time: float) -> float:
        """Training time for the budget: rank 0's, on every rank (one broadcast a step, only with a budget)."""
        return self.dist.broadcast_float(train_time, self.device) if self.cfg.time_budget_s > 0 else train_time

    def _evaluate_main(self, record: dict[str, Any], spent: bool = False) -> dict[str, Any]:
        record = self._evaluate_rank0(record, spent)
        if self.schedule is not None and self.dist.enabled:  # rank 0's eval may have moved it
            self.schedule.load_state_dict(self.dist.broadcast_object(self.schedule.state_dict()))
        return record

    def _evaluate_rank0(self, record: dict[str, Any], spent: bool = False) -> dict[str, Any]:
        """Rank 0 evaluates, logs and checkpoints; the other ranks skip ahead to the next step.

        The eval that ends the run says why in its record: "stop" is "target" (val_acc reached
        --target-acc), "time_budget" or "steps" (stop_reason).  (A kill between that record and
        its checkpoint leaves the record behind; --resume cuts the log back to the checkpoint
        and redoes it.)"""
        if not self.dist.is_main:
            return record
        st = self.state
        record = {**record, **self.estimate_loss()}
        if why := stop_reason(self.cfg, st.step, spent, reached_target(record, self.cfg)):
            record["stop"] = why
        best = st.step == 0 or record["val_loss"] < st.best_val
        if best:
            st.best_val = record["val_loss"]
        self._log(record)
        if st.step > 0:  # step 0 has nothing to save yet
            self.save(best=best)
        release_free_memory()  # the eval's and the checkpoint's buffers, freed: back to the OS
        if st.step == 0 and self.progress:  # the loop reports later evals itself
            self.progress.update(0, record)
        return record
