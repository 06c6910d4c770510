"""Data-parallel training with PyTorch's own DDP, launched by `torchrun`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `Dist.from_env()` reads them.
A single process is world size 1, and every helper here is then a no-op, so
the training loop has one code path.  Rank 0 alone logs, evaluates and writes
checkpoints; decisions that every rank must agree on (stop at the target, a
signal arrived, the loss went non-finite) are reduced across ranks first.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_env() -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Dist()
        return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    def init(self, device_type: str) -> None:
        """Join the process group: NCCL between GPUs, gloo on CPU."""
        if self.enabled and not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            if device_type == "cuda":
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group(backend, rank=self.rank, world_size=self.world)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast_flag(self, value: bool, device: torch.device) -> bool:
        """Rank 0's value of a boolean, on every rank."""
        return bool(self.broadcast_float(float(value), device))

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's value of a number, on every rank (float64: a clock's seconds, exactly)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's value of a small picklable object, on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End a torchrun rank without interpreter finalization.

    DDP keeps its process group alive inside C++ even after destroy_process_group()
    (torch 2.x), so gloo's worker threads outlive the Python program.  A worker that
    frees its last finished collective (which holds Python tensors) while the
    interpreter is finalizing cannot take the GIL and aborts the whole rank with
    "terminate called without an active exception" (3 exits in 34 on a loaded
    2-core machine).  Everything a run writes is already on disk by now (atomic
    checkpoint writes, metrics flushed per line), so the rank flushes stdio and
    leaves with os._exit, which never runs the finalizer that races.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
