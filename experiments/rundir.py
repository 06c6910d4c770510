"""Run directories: their layout, config.json's bytes, the lock, and names for new ones.

A run directory holds
    config.json     the run's settings and provenance (runspec.py decides what it says)
    metrics.jsonl   one JSON object per logged step
    ckpt.pt         the latest checkpoint        best.pt   the best val loss
    .lock           flock'ed by the process writing it, which also writes its pid there
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from experiments.errors import UserError
from experiments.registry import file_sha256
from gpt.atomic import atomic_write_text

CONFIG = "config.json"


def is_run(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def read_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory")
    if not is_run(path):
        raise UserError(f"{path} is not a run directory (no config.json)")
    try:
        cfg = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        if not isinstance(cfg, dict) or not {"task", "model", "train"} <= cfg.keys():
            raise ValueError("missing sections")
        return cfg
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}/config.json is corrupt: {e}") from None


def write_config(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(Path(path) / CONFIG, json.dumps(record, indent=2) + "\n")


def check_includes(run: Path, task_record: dict[str, Any]) -> None:
    """Refuse a run whose --include files changed since it was trained: its checkpoint was made
    by other task code.  Checked before the file runs.  Runs recorded before hashes were kept
    have none to compare, and load as before."""
    recorded = task_record.get("include_sha256") or {}
    for p in task_record.get("include", []):
        if not Path(p).is_file():
            raise UserError(f"run {run} needs task file {p}, which no longer exists")
        want = recorded.get(p)
        if not want:
            continue
        try:
            have = file_sha256(p)
        except OSError as e:
            raise UserError(f"run {run} needs task file {p}, which cannot be read: {e.strerror}") from None
        if have != want:
            raise UserError(f"task file {p} has changed since run {run} was trained (sha256 {want[:12]} then, "
                            f"{have[:12]} now); restore that version, or train a new run")


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent.parent  # the checkout this code runs from
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class FileLock:
    """An exclusive `flock` on a file, the project's one lock (runs and `workbench run` folders).

    The kernel releases a flock when its owner dies, however it dies (kill -9 included), so
    there is no stale-lock logic to get wrong: no pid is ever tested for liveness, and two
    processes racing for a dead owner's lock cannot both win.  The owner writes its pid into
    the file, for the refusal message only.  With `remove=True` the owner unlinks the file when
    done (still holding the lock); a taker that locked a file unlinked under it retries on the
    new one (see acquire).  The file is opened without following a symbolic link and is not
    inherited by subprocesses.  On NFS, Linux emulates flock with byte-range locks the server
    arbitrates, so a live owner on another host still holds its lock; a filesystem without
    locks fails here, one line.
    """

    def __init__(self, path: Path, what: str, remove: bool = False):
        self.path, self.what, self.remove = Path(path), what, remove
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise UserError(f"could not lock {self.what}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"could not lock {self.what}: {e.strerror}") from None
                pid = self._owner()
                owner = f" (pid {pid})" if pid is not None else ""
                raise UserError(f"{self.what} is in use by another workbench process{owner}") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # its owner unlinked it between our open and our flock: lock the new one
                os.close(fd)
                continue
            self._fd = fd
            try:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
            except OSError:
                pass  # the pid only improves another process's error message; the lock is held
            return

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None  # not written yet, or being rewritten

    def release(self) -> None:
        if self._fd is not None:
            if self.remove:
                self.path.unlink(missing_ok=True)  # before unlocking, so that nobody locks a file we then delete
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


class RunLock(FileLock):
    """The lock on a run directory (RUN/.lock), held for the run's life and removed after."""

    def __init__(self, run_dir: Path):
        super().__init__(Path(run_dir) / ".lock", str(run_dir), remove=True)


def new_run_dir(task: str) -> Path:
    """runs/TASK-TIMESTAMP, with -2, -3, ... when runs started in the same second."""
    base = Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while os.path.lexists(path):
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path

