"""Atomic file writes: a temp file beside the target, fsynced, then os.replace'd over it.

A kill at any instant leaves the old file or the whole new one, never part of one.  Checkpoints,
metrics logs, run configs, eval tables and reports are all written through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask cannot be read without setting it


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", before_replace: Callable[[], None] | None = None) -> Iterator[IO]:
    """A temp file beside path, renamed over it once the block ends cleanly (fsynced first);
    removed if the block raises, so that path holds the old file or the whole new one, never part.
    before_replace runs just before the rename (gpt.faults' injected kill strikes there)."""
    path = Path(path)
    # the name's first 32 characters: a temp name must fit where the file's own name just fits
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.", suffix=".tmp")
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
