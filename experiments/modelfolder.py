"""An exported model folder's format, in one place: `workbench export run` writes it with these
functions (export.py) and load_run reads it with them (load.py).

    model.safetensors   the weights, on the CPU; the tied lm_head/wte weight stored once.  Its
                        metadata: {"format": "pt", WEIGHTS_META: JSON {"step": N, "config":
                        {"task", "vocab", "model"}}}, the checkpoint meta load_run checks
    config.json         the run's own record (its "format" is the run format, rundir.RUN_FORMAT)
                        plus an EXPORT_KEY record: source, checkpoint, step, weights, end_token,
                        exported (a time)
    vocab.json          {character: token id}, in id order
    README.md           the model card

A folder is exported when it holds model.safetensors and no checkpoint (is_exported).  Its
layout is what huggingface_hub.upload_folder uploads as is.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.errors import UserError, optional_module
from experiments.runspec import to_jsonable
from gpt.config import GPTConfig

if TYPE_CHECKING:  # the weights are torch's; describing the format needs no torch
    import torch

WEIGHTS = "model.safetensors"  # the weights (safetensors, as the Hugging Face Hub expects)
WEIGHTS_META = "workbench"  # the safetensors metadata key holding {"step", "config"}: a checkpoint's own meta
VOCAB = "vocab.json"
CARD = "README.md"
EXPORT_KEY = "export"  # config.json's record of where the weights came from; a run's own has none


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


def export_section(source: Path, checkpoint: str, step: int, end_token: str | None) -> dict[str, Any]:
    """config.json's EXPORT_KEY record: where the folder's weights came from."""
    return {"source": str(Path(source).resolve()), "checkpoint": checkpoint, "step": step, "weights": WEIGHTS,
            "end_token": end_token, "exported": time.strftime("%Y-%m-%dT%H:%M:%S")}


# ---- model.safetensors ------------------------------------------------------------------------------

def weights_metadata(step: int, task: str, vocab: str, model: GPTConfig) -> dict[str, str]:
    """safetensors metadata (strings only): the checkpoint meta load_run checks, and the step."""
    meta = {"task": task, "vocab": vocab, "model": to_jsonable(model)}
    return {"format": "pt", WEIGHTS_META: json.dumps({"step": step, "config": meta})}


def write_weights(model: torch.nn.Module, file: Path, metadata: dict[str, str]) -> None:
    """model.safetensors from the model, on the CPU (the caller's model keeps its device).
    save_model, not save_file: the tied lm_head and wte weight is one tensor, which save_file
    refuses; save_model writes it once."""
    st = optional_module("safetensors.torch", "export", "export run")
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    st.save_model(model if on_cpu else copy.deepcopy(model).to("cpu"), str(file), metadata=metadata)
    os.chmod(file, 0o666 & ~_umask())  # safetensors writes 0600; the published file gets the usual mode


def _umask() -> int:
    """The process's umask (which cannot be read without setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def exported_state(file: Path, tied: list[list[str]]) -> dict[str, torch.Tensor]:
    """An exported model.safetensors as a state dict, every name of a shared tensor restored (the tied
    lm_head weight; with model.share_norms, every norm's).  tied: the model's groups of names that
    share one tensor (gpt.model.tied_names)."""
    st = optional_module("safetensors.torch", "export", f"loading an exported model ({WEIGHTS})")
    try:
        state = st.load_file(str(file))
    except Exception as e:  # noqa: BLE001 - safetensors' own error types vary by version
        raise UserError(f"{file} is not a readable safetensors file (corrupt or truncated?): "
                        f"{type(e).__name__}") from None
    for names in tied:  # save_model kept one name of each group for the one tensor
        shared = next((state[n] for n in names if n in state), None)
        if shared is not None:
            for n in names:
                state.setdefault(n, shared)
    return state


# ---- vocab.json ---------------------------------------------------------------------------------

def vocab_json(chars: str) -> str:
    """{character: id} in id order: the usual vocab.json of a character-level tokenizer."""
    return json.dumps({c: i for i, c in enumerate(chars)}, ensure_ascii=False, indent=1) + "\n"


def check_vocab_file(path: Path, vocab: str | None) -> None:
    """An exported folder's vocab.json must map the run's own characters to their ids: a folder
    whose vocab.json says otherwise was edited, and tokenizers reading it would disagree with us."""
    file = path / VOCAB
    if vocab is None or not file.exists():
        return
    try:
        mapping = json.loads(file.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        raise UserError(f"{file} is corrupt (not UTF-8 JSON)") from None
    if mapping != {c: i for i, c in enumerate(vocab)}:
        raise UserError(f"{file} does not match the vocabulary in {path / 'config.json'}; the folder was edited")
