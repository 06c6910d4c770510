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
from experiments.rundir import RUN_FORMAT
from experiments.runspec import RunSpec, read_run_spec, to_jsonable
from gpt.checkpoint import CheckpointError, load_checkpoint, state_mismatch
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
    step = meta.get("step") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or type(step) is not int or step < 0:
        raise UserError(f"{file} was not written by `workbench export run` (no valid {WEIGHTS_META!r} metadata)")
    return meta


def exported_state(file: Path, model_cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """An exported model.safetensors as a state dict, the tied lm_head weight restored."""
    st = optional_module("safetensors.torch", "export", f"loading an exported model ({WEIGHTS})")
    try:
        state = st.load_file(str(file))
    except Exception as e:  # noqa: BLE001 - safetensors' own error types vary by version
        raise UserError(f"{file} is not a readable safetensors file (corrupt or truncated?): "
                        f"{type(e).__name__}") from None
    if model_cfg.tie_weights:  # save_model kept one name of the two for the one tensor
        shared = state.get("wte.weight", state.get("lm_head.weight"))
        if shared is not None:
            state.setdefault("wte.weight", shared)
            state.setdefault("lm_head.weight", shared)
    return state


def check_vocab_file(path: Path, vocab: str | None) -> None:
    """An exported folder's vocab.json must map the run's own characters to their ids: a folder
    whose vocab.json says otherwise was edited, and tokenizers reading it would disagree with us."""
    file = path / "vocab.json"
    if vocab is None or not file.exists():
        return
    try:
        mapping = json.loads(file.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        raise UserError(f"{file} is corrupt (not UTF-8 JSON)") from None
    if mapping != {c: i for i, c in enumerate(vocab)}:
        raise UserError(f"{file} does not match the vocabulary in {path / 'config.json'}; the folder was edited")


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
    load_weights(model, exported_state(file, model_cfg), file, record)
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
