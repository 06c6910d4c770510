"""A run's training batches, on its device: built in this process, in a background thread,
or in worker processes.

Every batch is a pure function of (seed, split, step, micro) (Task.batch), and with a
curriculum of the level too, so all three give exactly the same tensors (tests/test_batches.py);
they differ only in where the host work of rendering problems happens while the device trains:

    make_batch_fn   in the training loop itself: the CPU default, where a helper would only
                    compete with the step for the same cores
    Prefetcher      one thread builds the next micro-batch during the current step (CUDA
                    with --batch-workers 0, or with fewer than 4 CPU cores)
    WorkerBatches   `workers` processes (a torch DataLoader over micro-batch indices) build
                    batches ahead, for GPUs faster than one core can feed: calculator batches
                    take 5.9 ms to build against a 12.4 ms H200 step (on a GPU with 4+
                    threads for the run, by default)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from experiments.errors import UserError
from gpt.train import EVAL_STEP_BASE
from tasks.base import Task
from tasks.curriculum import Curriculum
from tasks.positions import PositionIds

Batch = Callable[[str, int, int], tuple[torch.Tensor, torch.Tensor]]
Level = Callable[[], int]  # the curriculum level the run trains at now (experiments/curriculum.py)
MAX_WORKERS = 64


def _level_zero() -> int:
    return 0


def host_batch(task: Task, seed: int, split: str, step: int, micro: int, batch_size: int, block_size: int,
               ids: PositionIds | None, curriculum: Curriculum | None = None, level: int = 0):
    """task.batch as numpy arrays; position ids are asked for only when the model takes them, so a
    task whose batch predates them (a plugin's own `batch`) still trains every other model.  With a
    curriculum, training batches come from its level (the val split is always the whole task)."""
    if curriculum is not None:
        return curriculum.batch(level, seed, split, step, micro, batch_size, block_size, ids)
    if ids is None:
        return task.batch(seed, split, step, micro, batch_size, block_size)
    return task.batch(seed, split, step, micro, batch_size, block_size, ids)


def make_batch_fn(task: Task, seed: int, batch_size: int, block_size: int, device: torch.device,
                  rank: int = 0, grad_accum: int = 1, ids: PositionIds | None = None,
                  curriculum: Curriculum | None = None, level: Level = _level_zero) -> Batch:
    """batch(split, step, micro) on the device.  Rank r's micro-batch m of a step is global
    micro-batch r * grad_accum + m, so N ranks see exactly the data one process sees with
    N times the accumulation, and no two ranks share a batch.  ids: the position ids the
    model takes with its tokens (build.position_ids), if any; curriculum and level: the
    run's curriculum and where it is now, if it has one."""
    pin = device.type == "cuda"

    def batch(split: str, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            micro = rank * grad_accum + micro
        x, y = host_batch(task, seed, split, step, micro, batch_size, block_size, ids, curriculum, level())
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)

    return batch


class Prefetcher:
    """Builds the next training micro-batch in a background thread while the current step runs.

    Batches are pure functions of (split, step, micro), so the next key is known in advance
    and a prefetched batch is exactly the batch the loop would have built itself (tested).
    """

    def __init__(self, batch: Batch, grad_accum: int, level: Level = _level_zero):
        self.batch, self.grad_accum, self.level = batch, grad_accum, level
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self.pending: tuple[tuple[str, int, int, int], object] | None = None

    def __call__(self, split: str, step: int, micro: int):
        # the level is part of the key: a batch prefetched before an eval moved the curriculum up
        # is of the old level, and is built again
        key = (split, step, micro, self.level())
        if self.pending is not None and self.pending[0] == key:
            out = self.pending[1].result()
        else:
            out = self.batch(split, step, micro)
        self.pending = None
        if split == "train":
            nxt = (step, micro + 1) if micro + 1 < self.grad_accum else (step + 1, 0)
            self.pending = (("train", *nxt, key[3]), self.pool.submit(self.batch, "train", *nxt))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _MicroBatches(Dataset):
    """Index i -> the training micro-batch (step, micro) = divmod(i, grad_accum), on the host."""

    def __init__(self, task: Task, seed: int, batch_size: int, block_size: int, rank: int, grad_accum: int,
                 ids: PositionIds | None = None, curriculum: Curriculum | None = None, level: int = 0):
        self.task, self.seed, self.batch_size, self.block_size = task, seed, batch_size, block_size
        self.rank, self.grad_accum, self.ids = rank, grad_accum, ids
        self.curriculum, self.level = curriculum, level  # a level fixed for this loader's lifetime

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        step, micro = divmod(i, self.grad_accum)
        x, y = host_batch(self.task, self.seed, "train", step, self.rank * self.grad_accum + micro,
                          self.batch_size, self.block_size, self.ids, self.curriculum, self.level)
        return torch.from_numpy(x), torch.from_numpy(y)


class _CountFrom(Sampler):
    """start, start + 1, ...: the loader reads ahead as far as its workers' queues allow."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


class WorkerBatches:
    """Training micro-batches from a DataLoader whose `workers` processes build them ahead.

    The loop asks for (train, step, micro) in order; the loader serves index step * grad_accum
    + micro.  It starts at the first index asked for (a resumed run's step) and restarts if the
    loop ever jumps, or the curriculum moves to another level (the workers' batches ahead are
    then of the old one).  Other keys (the val split, and the train-split batches the loss estimate
    reads, at steps from EVAL_STEP_BASE) are built here directly, as make_batch_fn would.
    """

    def __init__(self, task: Task, seed: int, batch_size: int, block_size: int, device: torch.device,
                 workers: int, rank: int = 0, grad_accum: int = 1, ids: PositionIds | None = None,
                 curriculum: Curriculum | None = None, level: Level = _level_zero):
        self.direct = make_batch_fn(task, seed, batch_size, block_size, device, rank, grad_accum, ids,
                                    curriculum, level)
        self.args = (task, seed, batch_size, block_size, rank, grad_accum, ids, curriculum)
        self.device, self.workers, self.grad_accum, self.level = device, workers, grad_accum, level
        self.pin = device.type == "cuda"
        self.it: Iterator | None = None
        self.next_index = -1
        self.it_level = -1

    def __call__(self, split: str, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        if split != "train" or step >= EVAL_STEP_BASE:
            return self.direct(split, step, micro)
        i = step * self.grad_accum + micro
        level = self.level()
        if self.it is None or i != self.next_index or level != self.it_level:
            self.close()
            data = _MicroBatches(*self.args, level=level)
            self.it = iter(DataLoader(data, batch_size=None, sampler=_CountFrom(i), num_workers=self.workers,
                                      pin_memory=self.pin, prefetch_factor=4))
            self.it_level = level
        x, y = next(self.it)
        self.next_index = i + 1
        return x.to(self.device, non_blocking=self.pin), y.to(self.device, non_blocking=self.pin)

    def close(self) -> None:
        # dropping the iterator's last reference shuts its workers down (DataLoader's __del__)
        self.it = None


def check_workers(n: int | None) -> int | None:
    if n is not None and not 0 <= n <= MAX_WORKERS:
        raise UserError(f"--batch-workers must be between 0 and {MAX_WORKERS}, got {n}")
    return n


def auto_workers(device: torch.device, cpus: int | None = None) -> int:
    """--batch-workers auto: none on the CPU (they would take cores from training), and on a
    GPU half the run's CPUs, at most 4, given at least 4 (else the Prefetcher).  The run's CPUs
    are its thread count, which a grid sets to the run's share (OMP_NUM_THREADS, a spec's
    resources.num_cpus): nine runs sharing a GPU must not start four workers each."""
    cpus = cpus or torch.get_num_threads() or os.cpu_count() or 1
    return min(4, cpus // 2) if device.type == "cuda" and cpus >= 4 else 0


def batch_source(task: Task, seed: int, batch_size: int, block_size: int, device: torch.device, rank: int,
                 grad_accum: int, workers: int | None, ids: PositionIds | None = None,
                 curriculum: Curriculum | None = None, level: Level = _level_zero
                 ) -> tuple[Batch, Callable[[], None]]:
    """The run's batch function and what closes it (workers: None for auto_workers)."""
    n = auto_workers(device) if workers is None else workers
    if n > 0:
        src = WorkerBatches(task, seed, batch_size, block_size, device, n, rank, grad_accum, ids, curriculum, level)
        return src, src.close
    plain = make_batch_fn(task, seed, batch_size, block_size, device, rank, grad_accum, ids, curriculum, level)
    if device.type == "cuda":
        pre = Prefetcher(plain, grad_accum, level)
        return pre, pre.close
    return plain, lambda: None
