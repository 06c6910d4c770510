"""`--log tensorboard|wandb`: every metrics.jsonl record to the experiment trackers people use.

metrics.jsonl stays the record; a tracker is a gpt.train.MetricSink fed the same records, and the
run's config as hyperparameters.  Both survive `kill -9` and `--resume` with each step logged once:

- TensorBoard: event files in RUN/tb.  A resumed run opens its writer with `purge_step` just past
  the checkpoint (0 for a run restarted from scratch), so readers drop what the killed attempt
  logged after it; the writer is flushed with every checkpoint, so nothing the checkpoint covers
  can be lost.
- Weights & Biases: one W&B run per run directory (its id is derived from the directory and its
  creation time) in project `workbench` (WANDB_PROJECT overrides), resumed with `resume="allow"`.
  Steps are logged with their own step number.  W&B writes in its own process, which a `kill -9`
  of the run can take down before it has written anything, so a resumed sink first re-sends the
  records metrics.jsonl kept (up to the checkpoint) from the step the resumed W&B run expects
  next: what W&B already holds is not sent twice, what it lost is sent again, and the steps
  after the checkpoint follow as the run replays them.  `WANDB_MODE=offline` writes under
  RUN/wandb, one folder per attempt; `wandb sync` uploads them.

The libraries are optional extras: without one, `--log` says in one line which to install.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.errors import UserError, optional_module
from gpt.checkpoint import read_metrics
from gpt.protocols import MetricSink

SINKS = ("tensorboard", "wandb")
TB_DIR = "tb"


def check_sinks(names: Sequence[str]) -> tuple[str, ...]:
    """The --log names, checked (known, their library installed) before any training starts."""
    for name in names:
        if name not in SINKS:
            raise UserError(f"--log {name!r}: choose from {', '.join(SINKS)}")
    if "tensorboard" in names:
        optional_module("torch.utils.tensorboard", "tensorboard", "--log tensorboard", "tensorboard")
    if "wandb" in names:
        optional_module("wandb", "wandb", "--log wandb")
    return tuple(dict.fromkeys(names))


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record, step aside (a stop reason or a skip note is text)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def hyperparameters(record: dict[str, Any], tags: Sequence[str] = ()) -> dict[str, Any]:
    """config.json flattened to section.key -> value (numbers, strings, booleans), as trackers want."""
    out: dict[str, Any] = {"task": record["task"]["name"], "seed": record.get("seed"), "preset": record.get("preset", "")}
    sections = {"task": record["task"].get("config", {}), "model": record["model"], "train": record["train"]}
    for section, values in sections.items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    for tag in tags:
        key, _, value = tag.partition("=")
        out[f"tag.{key}"] = value
    return out


class TensorBoardSink:
    """Scalars under RUN/tb, one tag per metric; the config as TensorBoard hyperparameters."""

    def __init__(self, run_dir: Path, record: dict[str, Any], tags: Sequence[str] = ()):
        self.dir, self.record, self.tags = Path(run_dir) / TB_DIR, record, tuple(tags)
        self.writer = None

    def open(self, start_step: int) -> None:
        tb = optional_module("torch.utils.tensorboard", "tensorboard", "--log tensorboard", "tensorboard")
        self.summary_pb2 = optional_module("tensorboard.compat.proto.summary_pb2", "tensorboard", "--log tensorboard")
        # purge_step: a reader drops the events an earlier attempt logged at or after it
        self.writer = tb.SummaryWriter(str(self.dir), purge_step=start_step + 1 if start_step else 0)
        if start_step == 0:
            summary = optional_module("torch.utils.tensorboard.summary", "tensorboard", "--log tensorboard", "tensorboard")
            hp = {k: v for k, v in hyperparameters(self.record, self.tags).items() if v is not None}
            for event in summary.hparams(hp, {"val_loss": 0.0}):  # experiment, session start, session end
                self.writer.file_writer.add_summary(event)

    def log(self, record: dict[str, Any]) -> None:
        # one event holding every scalar of the step, not one event per scalar: a sixth of the work
        values = [self.summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars(record).items()]
        self.writer.file_writer.add_summary(self.summary_pb2.Summary(value=values), record["step"])

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbSink:
    """One W&B run per run directory, resumed across kills; offline with WANDB_MODE=offline."""

    def __init__(self, run_dir: Path, record: dict[str, Any], tags: Sequence[str] = ()):
        self.dir, self.record, self.tags = Path(run_dir), record, tuple(tags)
        self.run = None

    def run_id(self) -> str:
        """Stable across resumes of this run directory, different for any other run."""
        key = f"{self.dir.resolve()}|{self.record.get('created', '')}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def open(self, start_step: int) -> None:
        wandb = optional_module("wandb", "wandb", "--log wandb")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "workbench"), dir=str(self.dir), id=self.run_id(),
            resume="allow", name=self.dir.name, config=hyperparameters(self.record, self.tags),
            tags=[t.replace("=", ":") for t in self.tags], reinit=True,
        )
        if start_step:
            first = self.run.step  # the step the resumed W&B run expects next; what it holds stays
            for record in read_metrics(self.dir / "metrics.jsonl"):  # cut back to the checkpoint
                if first <= record["step"] <= start_step:
                    self.log(record)

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=record["step"])

    def flush(self) -> None:
        pass  # wandb's own service process writes and uploads as the records arrive

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


def make_sinks(names: Sequence[str], run_dir: Path, record: dict[str, Any], tags: Sequence[str] = ()) -> list[MetricSink]:
    kinds = {"tensorboard": TensorBoardSink, "wandb": WandbSink}
    tb = Path(run_dir) / TB_DIR
    if "tensorboard" in names and tb.exists() and not tb.is_dir():  # before the run folder changes
        raise UserError(f"--log tensorboard writes its events to {tb}, which is a file, not a folder")
    return [kinds[name](run_dir, record, tags) for name in check_sinks(names)]
