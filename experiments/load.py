"""The Python API: `load_run` gives a trained run's task and model, ready to answer.

    from experiments import load_run
    run = load_run("runs/addition-...")
    run.task.parse_answer(run.complete([run.task.prompt(123, 45)])[0])  # 168
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.build import build_task
from experiments.devices import resolve_device
from experiments.errors import UserError
from experiments.runspec import RunSpec, read_run_spec, to_jsonable
from gpt.checkpoint import CheckpointError, load_checkpoint
from gpt.generate import greedy_complete
from gpt.model import GPT, GPTConfig
from tasks.base import Task


@dataclass
class Run:
    """A trained run: run.model (on its device), run.task, run.config (config.json), run.complete(prompts)."""

    path: Path
    config: dict[str, Any]
    task: Task
    model: GPT
    step: int
    spec: RunSpec | None = None

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    def encode_prompt(self, prompt: str) -> list[int]:
        vocab = self.task.vocab
        if not vocab.contains(prompt):
            bad = "".join(sorted({c for c in prompt if c not in vocab.stoi}))
            raise UserError(f"prompt has characters outside the task's vocabulary: {bad!r}")
        return vocab.encode(prompt)

    def complete(self, prompts: Sequence[str], max_new_tokens: int | None = None, batch_size: int = 1024) -> list[str]:
        """Batched greedy completion; the end token and anything after it are stripped.

        A task without an end token (a text corpus) is continued for max_new_tokens, from the
        last block_size - 1 characters of a longer prompt."""
        block = self.model.config.block_size
        ids = [self.encode_prompt(p)[-(block - 1):] for p in prompts]
        end_id = -1 if self.task.end_id is None else self.task.end_id  # -1: no token matches, decode to the limit
        out = greedy_complete(self.model, ids, end_id, block if max_new_tokens is None else max_new_tokens,
                              batch_size)
        return [self.task.vocab.decode(o) for o in out]


def load_run(path: str | os.PathLike, device: str = "auto", checkpoint: str = "ckpt.pt",
             task_overrides: dict[str, Any] | None = None) -> Run:
    """Load a run's task and model.  task_overrides change the task for evaluation only."""
    path = Path(path)
    spec, record = read_run_spec(path)
    vocab = record["task"].get("vocab")
    task = build_task(spec.with_task_options(task_overrides or {}))
    if vocab is not None and task.vocab.chars != vocab:
        raise UserError(f"task {spec.task!r} now has a different vocabulary from the one run {path} was trained on")
    dev = resolve_device(device)
    try:
        ckpt = load_checkpoint(path / checkpoint, map_location=dev)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    check_checkpoint(ckpt, task, spec.model, path / checkpoint, vocab)
    model = GPT(spec.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path / checkpoint} does not match the run's model config: {str(e).splitlines()[0]}") from None
    model.to(dev).eval()
    return Run(path, record, task, model, int(ckpt["step"]), spec)


def check_checkpoint(ckpt: dict[str, Any], task: Task, model_cfg: GPTConfig, where: Path, vocab: str | None = None) -> None:
    """Refuse a checkpoint made for another task, vocabulary or model, naming what differs.

    Shapes alone would not catch it: `copy` and `reverse`, or `addition` and `modular`, have
    vocabularies of one size, so the other task's weights would load and answer nonsense."""
    meta = ckpt.get("config", {})
    vocab = task.vocab.chars if vocab is None else vocab
    diffs = []
    if meta.get("task") not in (None, task.name):
        diffs.append(f"task {meta.get('task')!r} vs {task.name!r}")
    saved_vocab = meta.get("vocab")
    if saved_vocab not in (None, vocab):
        short = max(len(saved_vocab), len(vocab)) <= 32  # a text corpus's alphabet is too long to print
        diffs.append(f"vocabulary {saved_vocab!r} vs {vocab!r}" if short
                     else f"vocabulary ({len(saved_vocab)} vs {len(vocab)} characters)")
    saved_model = meta.get("model")
    if isinstance(saved_model, dict):
        for k, v in to_jsonable(model_cfg).items():
            if k in saved_model and to_jsonable(saved_model[k]) != v:
                diffs.append(f"model.{k} {saved_model[k]} vs {v}")
    if diffs:
        raise UserError(f"{where} does not match this run's config: {', '.join(diffs)}")
