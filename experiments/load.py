"""The Python API: `load_run` gives a trained run's task and model, ready to answer.

    from experiments import load_run
    run = load_run("runs/addition-...")
    run.task.parse_answer(run.complete([run.task.prompt(123, 45)])[0])  # 168

A folder written by `workbench export run` loads the same way: its config.json is the run's, and
its weights are in model.safetensors instead of ckpt.pt (experiments/export.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.build import build_task, decode_positions
from experiments.devices import resolve_device
from experiments.errors import UserError, optional_module
from experiments.runspec import RunSpec, read_run_spec, to_jsonable
from gpt.checkpoint import CheckpointError, load_checkpoint
from gpt.generate import greedy_complete
from gpt.model import GPT, GPTConfig
from tasks.base import Task
from tasks.encode import Rendered, field_strings

WEIGHTS = "model.safetensors"  # an exported folder's weights (safetensors, as the Hugging Face Hub expects)
WEIGHTS_META = "workbench"  # the safetensors metadata key holding {"step", "config"}: a checkpoint's own meta


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
        chars, lens = field_strings([self.task.vocab.decode(i) for i in ids])
        positions, counts = decode_positions(self.task, self.model.config, Rendered(chars, lens, lens))
        out = greedy_complete(self.model, ids, end_id, block if max_new_tokens is None else max_new_tokens,
                              batch_size, positions=positions, counts=counts)
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
    if is_exported(path, checkpoint):
        model, step = _load_exported(path, task, spec.model, vocab, dev)
        return Run(path, record, task, model, step, spec)
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


def is_exported(path: Path, checkpoint: str = "ckpt.pt") -> bool:
    """Whether path is an exported folder (model.safetensors, no checkpoint) rather than a run.

    A run directory that also holds model.safetensors still loads its checkpoint: the checkpoint
    is what training writes, so it is the newer of the two."""
    path = Path(path)
    if (path / checkpoint).exists() or not (path / WEIGHTS).is_file():
        return False
    if checkpoint != "ckpt.pt":  # an exported folder holds one set of weights, not ckpt.pt and best.pt
        raise UserError(f"{path} is an exported model ({WEIGHTS}); it has no {checkpoint}: drop --checkpoint")
    return True


def read_weights_meta(file: Path) -> dict[str, Any]:
    """The {"step", "config"} an exported model.safetensors carries in its metadata."""
    safetensors = optional_module("safetensors", "export", f"loading an exported model ({WEIGHTS})")
    try:
        with safetensors.safe_open(str(file), framework="pt") as f:
            raw = (f.metadata() or {}).get(WEIGHTS_META)
        meta = json.loads(raw) if raw else {}
    except Exception as e:  # noqa: BLE001 - safetensors' own error types vary by version
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{file} is not a readable safetensors file (corrupt or truncated?): {first[:200]}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or not isinstance(meta.get("step"), int):
        raise UserError(f"{file} was not written by `workbench export run` (no {WEIGHTS_META!r} metadata)")
    return meta


def _load_exported(path: Path, task: Task, model_cfg: GPTConfig, vocab: str | None,
                   dev: torch.device) -> tuple[GPT, int]:
    """An exported folder's model, checked as a checkpoint is: task, vocabulary, model config."""
    file = path / WEIGHTS
    meta = read_weights_meta(file)
    check_checkpoint(meta, task, model_cfg, file, vocab)
    st = optional_module("safetensors.torch", "export", f"loading an exported model ({WEIGHTS})")
    model = GPT(model_cfg)
    try:
        # load_model, not load_file + load_state_dict: it restores the tied lm_head/wte weight
        # that export wrote once (safetensors stores no shared tensors).  Onto the CPU, then to
        # the device: safetensors 0.4 (the lowest supported) has no device argument here
        st.load_model(model, str(file), strict=True)
    except RuntimeError as e:
        raise UserError(f"{file} does not match the run's model config: {str(e).splitlines()[0]}") from None
    model.to(dev).eval()
    return model, int(meta["step"])


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
