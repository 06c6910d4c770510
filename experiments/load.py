"""The Python API: `load_run` gives a trained run's task and model, ready to answer.

    from experiments import load_run
    run = load_run("runs/addition-...")
    run.task.parse_answer(run.complete([run.task.prompt(123, 45)])[0])  # 168

A folder written by `workbench export run` loads the same way: its config.json is the run's, and
its weights are in model.safetensors instead of ckpt.pt (experiments/modelfolder.py, its format).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch

from experiments.build import build_task, decode_positions
from experiments.devices import resolve_device
from experiments.errors import UserError, optional_module
from experiments.modelfolder import WEIGHTS, check_vocab_file, exported_state, is_exported, read_weights_meta
from experiments.rundir import RUN_FORMAT
from experiments.runspec import RunSpec, read_run_spec, to_jsonable
from gpt.checkpoint import CheckpointError, load_checkpoint, state_mismatch
from gpt.generate import greedy_complete
from gpt.lens import to_hooked_transformer, unsupported
from gpt.model import GPT, GPTConfig, tied_names
from tasks.base import Task
from tasks.encode import Rendered, field_strings

if TYPE_CHECKING:  # the lens extra: imported when Run.to_transformer_lens() is called, never before
    from transformer_lens import HookedTransformer

# 4.0 removed HookedTransformer (for TransformerBridge, which wraps Hugging Face models); the extra pins 3.x
LENS_NEEDS = "transformer-lens 3.x (4.0 removed HookedTransformer)"

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

    def to_transformer_lens(self) -> HookedTransformer:
        """The model as a TransformerLens HookedTransformer (gpt/lens.py): its logits, on its device,
        with every activation hooked.  A copy: changing it leaves run.model as it is.  A model option
        TransformerLens has no counterpart for is refused, named, before the extra is imported."""
        if (reason := unsupported(self.model.config)) is not None:
            raise UserError(f"run {self.path} cannot be a HookedTransformer: {reason}")
        return to_hooked_transformer(self.model, transformer_lens())


def transformer_lens() -> ModuleType:
    """The transformer_lens package, 3.x; missing, or a 4.x without the class, one line naming the extra."""
    optional_module("transformer_lens.HookedTransformer", "lens", "Run.to_transformer_lens()", LENS_NEEDS)
    return optional_module("transformer_lens", "lens", "Run.to_transformer_lens()", LENS_NEEDS)


def load_run(path: str | os.PathLike, device: str = "auto", checkpoint: str = "ckpt.pt",
             task_overrides: dict[str, Any] | None = None, trust_code: bool = False,
             include: Sequence[str] = ()) -> Run:
    """Load a run's task and model.  task_overrides change the task for evaluation only.

    A run whose task is defined by a Python file (`--include`) runs the copy of that file kept in
    its folder; a folder not trained on this machine (a downloaded export, an edited config.json)
    runs it only with trust_code=True (experiments/trust.py).  `include` names files of the user's
    own that define the task instead (a new version of it, on purpose)."""
    path = Path(path)
    spec, record = read_run_spec(path, trust_code, include)
    vocab = record["task"].get("vocab")
    task = build_task(spec.with_task_options(task_overrides or {}))
    if vocab is not None and task.vocab.chars != vocab:
        raise UserError(f"task {spec.task!r} now has a different vocabulary from the one run {path} was trained on")
    dev = resolve_device(device)
    if is_exported(path, checkpoint):
        model, step = _load_exported(path, task, spec.model, record, dev)
        return Run(path, record, task, model, step, spec)
    try:
        ckpt = load_checkpoint(path / checkpoint, map_location=dev)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    check_checkpoint(ckpt, task, spec.model, path / checkpoint, vocab)
    model = GPT(spec.model)
    load_weights(model, ckpt["model"], path / checkpoint, record)
    model.to(dev).eval()
    return Run(path, record, task, model, int(ckpt["step"]), spec)


def load_weights(model: GPT, state: dict[str, Any], file: Path, record: dict[str, Any]) -> None:
    """state into model, or one line saying what does not fit, and for a run written by an older
    workbench (an older run format) that this is why."""
    try:
        model.load_state_dict(state)
        return
    except (RuntimeError, KeyError, TypeError, ValueError):
        pass
    msg = f"{file} does not fit the run's model config: {state_mismatch(model, state)}"
    fmt = record.get("format") or 1
    if fmt < RUN_FORMAT:
        msg += (f". The run was made by an older workbench (run format {fmt}, now {RUN_FORMAT}; commit "
                f"{record.get('git') or 'unknown'}), whose model code differed: retrain it, or load it with that version")
    raise UserError(msg)


def _load_exported(path: Path, task: Task, model_cfg: GPTConfig, record: dict[str, Any],
                   dev: torch.device) -> tuple[GPT, int]:
    """An exported folder's model, checked as a checkpoint is: task, vocabulary, model config."""
    file, vocab = path / WEIGHTS, record["task"].get("vocab")
    meta = read_weights_meta(file)
    check_checkpoint(meta, task, model_cfg, file, vocab)
    check_vocab_file(path, vocab)
    model = GPT(model_cfg)
    # load_file, then the tied lm_head/wte weight restored from wte: export wrote it once
    # (safetensors stores no shared tensors).  Onto the CPU, then to the device: safetensors 0.4
    # (the lowest supported) has no device argument here
    load_weights(model, exported_state(file, tied_names(model)), file, record)
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
