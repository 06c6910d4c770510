"""Validated checkpoints and an append-only metrics log.

Every write is atomic (gpt.atomic), so a kill at any instant leaves either the old
file or the new one, never a torn one.  Loading uses weights_only=True and
turns every failure into a CheckpointError with one readable line.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gpt.atomic import atomic_write_bytes, atomic_write_text
from gpt.model import rename_legacy_keys

FORMAT = "workbench-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why."""


def save_checkpoint(path: Path, payload: dict[str, Any], before_replace: Callable[[], None] | None = None) -> None:
    """Serialise payload (tensors, numbers, strings, lists, dicts) atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue(), before_replace)


def _load_failure(e: Exception) -> str:
    """Why torch.load failed, in a whole sentence of our own: torch's messages run to a page, and
    one advises loading with weights_only=False, which would run whatever the file holds."""
    text = str(e)
    if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
        return ("it holds Python objects besides tensors, which workbench never writes and never loads "
                "(a file from elsewhere, or not a checkpoint)")
    if "zip" in text.lower() or "central directory" in text or isinstance(e, EOFError):
        return "it is truncated or corrupt (not a whole PyTorch file)"
    return f"it is corrupt or not a PyTorch file ({type(e).__name__})"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, foreign objects ...
        raise CheckpointError(f"{path} is not a readable checkpoint: {_load_failure(e)}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a workbench checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')}, expected {VERSION}")
    for key, want in (("model", dict), ("step", int), ("config", dict)):
        if key not in obj:
            raise CheckpointError(f"{path} is missing '{key}'")
        if not isinstance(obj[key], want) or isinstance(obj[key], bool):
            raise CheckpointError(f"{path} is corrupt: its '{key}' is a {type(obj[key]).__name__}")
    return obj


def state_mismatch(model: torch.nn.Module, state: dict[str, Any]) -> str:
    """What keeps `state` from loading into `model`, in a few words: the keys it lacks, the ones
    it has in excess, and the shapes that differ (torch's own message is a page long)."""
    own = model.state_dict()
    state = dict(state)
    rename_legacy_keys(state)  # as GPT.load_state_dict's pre-hook does

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape]
    parts = ([f"it lacks {some(missing)}"] if missing else []) + ([f"it has no place for {some(extra)}"] if extra else [])
    parts += [f"shapes differ: {some(shapes)}"] if shapes else []
    return "; ".join(parts) or "its tensors do not fit the model"


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step.

    Lines are appended and flushed; on resume, lines past the checkpoint's
    step are dropped (atomically) so each step appears exactly once.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = None

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Drop the records after step; returns the ones kept."""
        records = read_metrics(self.path)
        kept = [r for r in records if r.get("step", -1) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def append(self, record: dict[str, Any]) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def sync(self) -> None:
        if self._f is not None:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def check_metrics(path: Path, numbers: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """metrics.jsonl's records, each checked: a JSON object with a whole-number step (in order),
    and numbers where it has any of `numbers`.  Only a torn last line (JSON cut short by a kill,
    no newline after it) is skipped; ValueError names the file and line of anything else.
    The trainer writes ASCII (json.dumps escapes the rest), so other bytes are damage, not a tear."""
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except (FileNotFoundError, NotADirectoryError):
        return []
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}:{i}: not UTF-8") from None
        try:
            rec = json.loads(text)
        except (ValueError, RecursionError):
            if i == len(lines):  # the last line, with no newline after it: torn by a kill
                break
            raise ValueError(f"{path}:{i}: not a JSON record") from None
        why = _record_problem(rec, numbers, out[-1]["step"] if out else 0)
        if why:
            raise ValueError(f"{path}:{i}: {why}")
        out.append(rec)
    return out


MAX_STEP = 10**9  # no run takes more steps (experiments.errors.MAX_STEPS bounds --steps alike)
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _record_problem(rec: Any, numbers: tuple[str, ...], last: int) -> str | None:
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {_JSON_TYPES.get(type(rec), 'a number')}"
    step = rec.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:  # not a bool, not 7.5, not "7"
        return f'"step" must be a whole number from 0 to {MAX_STEP:,}, got {json.dumps(step)[:40] if "step" in rec else "none"}'
    if step < last:
        return f"step {step} after step {last}"
    bad = next((k for k in numbers if k in rec and (not isinstance(rec[k], (int, float)) or isinstance(rec[k], bool))),
               None)
    return f'"{bad}" must be a number, got {json.dumps(rec[bad])[:40]}' if bad else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete records; a torn last line (a kill mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
