"""Every file a command writes at the user's request (--out, --samples, --plot, --json), by one rule.

The rule (docs/reliability.md, "Output files"):
  - a path inside a run folder or an exported model folder is refused, whatever the file name:
    a run's files are written by `workbench train` alone (and an exported folder by nobody);
  - a path that names a folder, a name with control characters, or a name longer than the
    file system takes is refused;
  - an existing regular file outside a run is replaced, atomically (temp file, then os.replace),
    as every output option's help says;
  - /dev/stdout, /dev/null or a named pipe is written in place (one output only: several runs'
    files cannot share one device); a symbolic link is followed (replacing it would cut the link);
  - all of it is checked before the work starts (check_output), so a mistake costs seconds.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from experiments.errors import UserError
from gpt.atomic import atomic_open, atomic_write_bytes

NAME_MAX = 255  # bytes in one file name: Linux, macOS and Windows file systems alike
# what marks a folder as a run's (rundir.py) or an exported model's (export.py): see _kind
CHECKPOINTS = ("ckpt.pt", "best.pt")
METRICS = "metrics.jsonl"
EXPORTED_WEIGHTS = "model.safetensors"
REPLACES = "an existing file is replaced"  # the phrase every output option's help carries


def _is_record(config: Path) -> bool:
    try:
        with open(config, "rb") as f:
            head = f.read(1 << 20)
        record = json.loads(head)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and {"task", "model", "train"} <= record.keys()


def protected_folder(path: Path) -> tuple[Path, str] | None:
    """The run or exported folder that `path` is or lies inside, with its kind; None if none.

    Every ancestor is looked at: `--out RUN/tb/x.png` is inside the run as much as RUN/x.png."""
    here = Path(os.path.realpath(path))
    for folder in (here, *here.parents):
        try:
            kind = _kind(folder)
        except OSError:  # an unreadable ancestor: nothing we could have written there either
            continue
        if kind is not None:
            return folder, kind
    return None


def _kind(folder: Path) -> str | None:
    """What marks a run or an export: a workbench config.json record, or (a run whose config.json
    is damaged, an export without one) workbench's own combination of files.  A file such as
    best.pt alone is not enough: many projects' folders hold one."""
    exported = (folder / EXPORTED_WEIGHTS).is_file()
    if _is_record(folder / "config.json"):
        return "an exported model folder" if exported else "a run folder"
    if exported and (folder / "vocab.json").is_file():
        return "an exported model folder"
    if (folder / METRICS).is_file() and any((folder / c).is_file() for c in CHECKPOINTS):
        return "a run folder"
    return None


def check_name(path: Path, flag: str) -> None:
    """Refuse names no file should have: control characters (a newline would break every line
    that shows the path, and any code written with it), or more bytes than a file name takes."""
    text = str(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UserError(f"{flag} {text!r}: a path with control characters (newline, tab, ...) is refused")
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise UserError(f"{flag}: the name {part[:40]}… is {size} bytes long; a file name takes at most {NAME_MAX}")


def refuse_protected(path: Path, flag: str) -> None:
    """A command never writes into a run folder or an exported folder."""
    found = protected_folder(Path(path).parent if not Path(path).is_dir() else Path(path))
    if found is not None:
        folder, kind = found
        raise UserError(f"{flag} {path} is inside {kind} ({folder}); workbench never writes its output there: "
                        "choose a path outside it")


def output_target(path: Path) -> tuple[Path, bool]:
    """Where an output file really goes, and whether it can be replaced atomically.

    A symlink is followed (replacing it would cut the link); an existing non-regular file such as
    /dev/stdout, /dev/null or a named pipe is written in place: os.replace would put a regular
    file where the device was."""
    path = Path(path)
    if path.exists() and not path.is_file():  # both follow symlinks, /proc's magic ones included
        return path, False
    return (Path(os.path.realpath(path)) if path.is_symlink() else path), True


def check_output(path: Path, flag: str, suffixes: tuple[str, ...] = (), device_ok: bool = True) -> Path:
    """Refuse an output path before the (possibly long) work starts; returns it.

    suffixes: the endings the output's format allows (empty: any).  device_ok=False where the
    command writes several files from this one name, which a device or pipe cannot hold."""
    path = Path(path)
    check_name(path, flag)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path}: give a file ending in {', '.join(suffixes)}")
    target, atomic = output_target(path)
    if not atomic:  # /dev/stdout, a named pipe: written in place
        if not device_ok:
            raise UserError(f"{flag} {path} is not a regular file, and this command writes one file per run "
                            "from its name; give a file name")
        if not os.access(target, os.W_OK):
            raise UserError(f"cannot write {flag} {path}: permission denied")
        return path
    refuse_protected(target, flag)
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    try:  # one probe answers for permissions, read-only file systems and the rest alike
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".wb-", suffix=".probe")
    except OSError as e:
        raise UserError(f"cannot write {flag} {path}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)
    return path


def per_run_paths(path: Path | None, count: int, flag: str) -> list[Path | None]:
    """One output file per run from one name: the name itself for one run; STEM.0.SUFFIX,
    STEM.1.SUFFIX, ... for several (a device or pipe cannot hold several, and is refused)."""
    if path is None:
        return [None] * count
    if count == 1:
        return [check_output(path, flag)]
    check_output(path, flag, device_ok=False)
    return [check_output(path.with_name(f"{path.stem}.{i}{path.suffix}"), flag) for i in range(count)]


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
