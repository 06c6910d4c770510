"""Run directories: their layout, config.json's bytes, the lock, and names for new ones.

A run directory holds
    config.json     the run's settings and provenance (runspec.py decides what it says)
    tasks/          copies of its --include task files, the only code loading the run executes
    metrics.jsonl   one JSON object per logged step
    ckpt.pt         the latest checkpoint        best.pt   the best val loss
    .lock           flock'ed by the process writing it, which also writes its pid there
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from experiments.errors import UserError
from experiments.registry import file_sha256, included_source
from experiments.trust import HOW, sealed_here
from gpt.atomic import atomic_write_bytes, atomic_write_text

CONFIG = "config.json"


def is_run(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


RUN_FORMAT = 2  # config.json's "format": 2 keeps --include files in RUN/tasks (1: none recorded, files outside)
INCLUDE_DIR = "tasks"  # a run's copies of its --include task files
_SECTIONS = {"task": dict, "model": dict, "train": dict}
_FIELDS = {"seed": int, "preset": str, "init_from": str, "world_size": int, "format": int}  # checked where present


def read_config(path: Path) -> dict[str, Any]:
    """config.json, checked: bad bytes, bad JSON, absurd nesting and wrong types are one user
    error naming the file and the key, before anything reads a value."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory")
    if not is_run(path):
        raise UserError(f"{path} is not a run directory (no config.json)")
    where = path / CONFIG
    try:
        cfg = json.loads(where.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{where} is corrupt: {e}") from None
    except RecursionError:
        raise UserError(f"{where} is corrupt: nested too deeply") from None
    except OSError as e:
        raise UserError(f"cannot read {where}: {e.strerror or e}") from None
    check_record(cfg, where)
    return cfg


def _type_error(where: Path, key: str, want: type, got: Any) -> UserError:
    return UserError(f"{where} is corrupt: {key} should be {want.__name__}, not {type(got).__name__}")


def check_record(cfg: Any, where: Path) -> None:
    """The shape of a run record: every reader may then index it without a type check of its own."""
    if not isinstance(cfg, dict):
        raise UserError(f"{where} is corrupt: expected an object, got {type(cfg).__name__}")
    for key, want in _SECTIONS.items():
        if key not in cfg:
            raise UserError(f"{where} is corrupt: no {key!r} section")
        if not isinstance(cfg[key], want):
            raise _type_error(where, key, want, cfg[key])
    for key, want in _FIELDS.items():
        v = cfg.get(key)
        if v is not None and (not isinstance(v, want) or isinstance(v, bool)):
            raise _type_error(where, key, want, v)
    task = cfg["task"]
    if not isinstance(task.get("name"), str):
        raise _type_error(where, "task.name", str, task.get("name"))
    for key, want in (("include", list), ("include_sha256", dict), ("config", dict), ("vocab", str)):
        if task.get(key) is not None and not isinstance(task[key], want):
            raise _type_error(where, f"task.{key}", want, task[key])
    if not all(isinstance(p, str) for p in task.get("include") or []):
        raise UserError(f"{where} is corrupt: task.include should be a list of file names")
    if not all(isinstance(v, str) for v in (task.get("include_sha256") or {}).values()):
        raise UserError(f"{where} is corrupt: task.include_sha256 should map file names to hashes")


def write_config(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(Path(path) / CONFIG, json.dumps(record, indent=2) + "\n")


def copy_includes(run: Path, include: Sequence[str]) -> dict[str, str]:
    """Copy each --include file into RUN/tasks/ (the bytes this process executed) and return
    {the copy's path relative to RUN: its sha256}: what config.json records and loads from."""
    out: dict[str, str] = {}
    for i, p in enumerate(include):
        name = Path(p).name if Path(p).name not in {Path(q).name for q in include[:i]} else f"{i}-{Path(p).name}"
        rel = f"{INCLUDE_DIR}/{name}"
        source = included_source(p)
        (Path(run) / INCLUDE_DIR).mkdir(exist_ok=True)
        atomic_write_bytes(Path(run) / rel, source)
        out[rel] = hashlib.sha256(source).hexdigest()
    return out


def include_files(run: Path, task_record: dict[str, Any], trust_code: bool = False) -> tuple[tuple[str, str], ...]:
    """The task files a run's task needs, as (path to load, sha256), checked before any of them runs.

    Each must be recorded with its sha256 and still have it; a run's own copies (RUN/tasks/...)
    are read from its folder only, never from the current directory.  Unless the run was
    trained on this machine (sealed_here) or trust_code is set, no file runs at all."""
    include = task_record.get("include") or []
    if not include:
        return ()
    recorded = task_record.get("include_sha256") or {}
    found = []
    for p in include:
        want = recorded.get(p)
        if not want:
            raise UserError(f"run {run} names task file {p} but records no sha256 for it; refusing to run it")
        file = _include_path(Path(run), p)
        try:
            have = file_sha256(str(file))
        except FileNotFoundError:
            raise UserError(f"run {run} needs task file {file}, which no longer exists") from None
        except OSError as e:
            raise UserError(f"run {run} needs task file {file}, which cannot be read: {e.strerror}") from None
        if have != want:
            raise UserError(f"task file {file} has changed since run {run} was trained (sha256 {want[:12]} then, "
                            f"{have[:12]} now); restore that version, or train a new run")
        found.append((str(file), want))
    if not trust_code and not sealed_here(task_record["name"], recorded, task_record.get("include_seal")):
        files = ", ".join(f for f, _ in found)
        raise UserError(f"run {run} runs task code ({files}) and was not trained on this machine, or its config.json "
                        f"was edited: its code runs only if you trust it; then {HOW}")
    return tuple(found)


def _include_path(run: Path, recorded: str) -> Path:
    """Where a recorded task file is: inside the run (RUN/tasks/NAME.py), or, for a run made
    before copies were kept (format 1), the absolute path it was trained from."""
    p = PurePosixPath(recorded)
    if p.is_absolute():
        return Path(recorded)
    if ".." in p.parts or p.parts[:1] != (INCLUDE_DIR,) or len(p.parts) != 2:
        raise UserError(f"run {run} names task file {recorded!r}, which is not in its {INCLUDE_DIR}/ folder; "
                        "refusing to run it")
    return run / p


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


def training_pid(run: Path) -> int | None:
    """The pid of the process training the run now (0 if its pid is unknown), or None if none is:
    a probe of RUN/.lock that takes a shared lock and lets it go at once."""
    try:
        fd = os.open(Path(run) / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return FileLock(Path(run) / ".lock", str(run))._owner() or 0
    finally:
        os.close(fd)


class RunLock(FileLock):
    """The lock on a run directory (RUN/.lock), held for the run's life and removed after."""

    def __init__(self, run_dir: Path):
        super().__init__(Path(run_dir) / ".lock", str(run_dir), remove=True)


def new_run_dir(task: str) -> Path:
    """runs/TASK-TIMESTAMP, with -2, -3, ... when runs started in the same second (rg:NAME's
    folder is rg-NAME-...: a colon is no file name character everywhere)."""
    base = Path("runs") / f"{task.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while os.path.lexists(path):
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path

