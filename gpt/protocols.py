"""What the training loop is handed, as types: the loop knows no task, only these.

    BatchFn      (split, step, micro) -> (x, y)   a pure function of its arguments
    EvalFn       model -> {metric: value}         extra metrics at each eval (val_acc, ...)
    Schedule     data-side state an eval may move (a curriculum's level), saved in checkpoints
    MetricSink   another place every metrics.jsonl record goes (an experiment tracker)

x is (B, T) tokens, or (B, T, 2) tokens and position ids; y is (B, T) targets, -1 where there is none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from gpt.model import GPT

BatchFn = Callable[[str, int, int], tuple[torch.Tensor, torch.Tensor]]
EvalFn = Callable[[GPT], dict[str, float]]


class Schedule(Protocol):
    """State of the data side that evals may change as training goes (a curriculum's level).

    The batch function reads it; the eval function may change it.  The loop saves it with every
    checkpoint and restores it on resume, so a resumed run sees exactly the batches an
    uninterrupted one would; `fields` goes into every logged record (e.g. {"level": 2})."""

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def fields(self) -> dict[str, Any]: ...


class MetricSink(Protocol):
    """Somewhere else every metrics.jsonl record goes too (an experiment tracker).

    metrics.jsonl stays the record; a sink gets the same records, on rank 0 only.  `open` says
    where the run starts: a resumed run replays the steps after its checkpoint, so a sink drops
    whatever an earlier attempt logged past `start_step` (each step ends up there once).  `flush`
    is called with every checkpoint, so that what a checkpoint covers is never lost by a kill."""

    def open(self, start_step: int) -> None: ...
    def log(self, record: dict[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
