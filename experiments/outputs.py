"""Output files the user names (--out, --samples, --plot, --json): checked early, written atomically.

A path may also be /dev/stdout, /dev/null or a named pipe, which is written in place, and a
symbolic link, which is followed (replacing it would cut the link).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from experiments.errors import UserError
from gpt.atomic import atomic_open, atomic_write_bytes


def output_target(path: Path) -> tuple[Path, bool]:
    """Where an output file really goes, and whether it can be replaced atomically.

    A symlink is followed (replacing it would cut the link); an existing non-regular file such as
    /dev/stdout, /dev/null or a named pipe is written in place: os.replace would put a regular
    file where the device was."""
    path = Path(path)
    if path.exists() and not path.is_file():  # both follow symlinks, /proc's magic ones included
        return path, False
    return (Path(os.path.realpath(path)) if path.is_symlink() else path), True


def check_writable(path: Path, flag: str) -> None:
    """Refuse an output path that cannot be written before the (possibly long) work starts.

    Writing a probe file in the folder is the one test that answers for permissions, read-only
    file systems and the rest alike; the real write later is atomic (temp file, then os.replace)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    target, atomic = output_target(path)
    if not atomic:  # /dev/stdout, a named pipe: written in place
        if not os.access(target, os.W_OK):
            raise UserError(f"cannot write {flag} {path}: permission denied")
        return
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
    except OSError as e:
        raise UserError(f"cannot write {flag} {path}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)


def write_output(path: Path, data: str | bytes, flag: str) -> None:
    """Write an output file atomically: a failed write leaves the old file (or none), never half of one."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    try:
        target, atomic = output_target(path)
        if atomic:
            atomic_write_bytes(target, data)
        else:
            with open(target, "wb") as f:
                f.write(data)
    except OSError as e:
        raise UserError(f"cannot write {flag} {path}: {e.strerror or e}") from None


@contextmanager
def atomic_text_file(path: Path) -> Iterator[TextIO]:
    """A text file streamed to a temporary file beside `path`, which replaces `path` only when the
    block ends without an error: an interrupted or failed evaluation leaves the old file (or
    none), never a truncated one that reads as a complete sample set."""
    path, atomic = output_target(Path(path))
    if not atomic:
        with open(path, "w", encoding="utf-8") as f:
            yield f
        return
    with atomic_open(path, "w") as f:
        yield f
