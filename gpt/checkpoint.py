"""Atomic, validated checkpoints and an append-only metrics log.

Every write goes to a temporary file in the same directory, is fsynced, then
os.replace'd over the target, so a kill at any instant leaves either the old
file or the new one, never a torn one.  Loading uses weights_only=True and
turns every failure into a CheckpointError with one readable line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

FORMAT = "workbench-checkpoint"
VERSION = 1


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask cannot be read without setting it


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why."""


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", before_replace: Callable[[], None] | None = None) -> Iterator[IO]:
    """A temp file beside path, renamed over it once the block ends cleanly (fsynced first);
    removed if the block raises, so that path holds the old file or the whole new one, never part.
    before_replace runs just before the rename (gpt.train's fault injection kills there)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual mode
        with (os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, encoding="utf-8")) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes, before_replace: Callable[[], None] | None = None) -> None:
    """Write data to path atomically (see atomic_open)."""
    with atomic_open(path, "wb", before_replace) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, payload: dict[str, Any], before_replace: Callable[[], None] | None = None) -> None:
    """Serialise payload (tensors, numbers, strings, lists, dicts) atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue(), before_replace)


def remove_temp_files(directory: Path) -> list[Path]:
    """Delete the temp files that writers killed mid-write left in directory (`.NAME.*.tmp`,
    atomic_write_bytes's names).  Only safe while no other process writes there: call it
    holding the run's lock.  Returns what it removed."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, foreign objects ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {first[:200]}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a workbench checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')}, expected {VERSION}")
    for key in ("model", "step", "config"):
        if key not in obj:
            raise CheckpointError(f"{path} is missing '{key}'")
    return obj


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
