"""User errors, and the checks on the numbers a user types.

A UserError ends a command with one clear line on stderr and exit code 2, never a traceback.
"""

import errno
import importlib
import importlib.metadata
import json
import os
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlparse


class UserError(Exception):
    """Something the user can fix: a bad name, option, file or run directory."""


class TrainFailed(Exception):
    """The run stopped on its own (NaN, a failed write, a signal): the message, and its exit code:
    1, or 2 when the user can fix the cause (a full disk, a folder that became unwritable), or
    128 + the signal's number when a signal stopped it (after a checkpoint)."""

    def __init__(self, msg: str, code: int = 1):
        super().__init__(msg)
        self.code = code


# OS errors that are the user's to fix: a full disk, a path that can't be written or doesn't exist
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT,
                         errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ELOOP, errno.EFBIG})

MAX_SEED = 2**63 - 1  # seeds go into numpy's SeedSequence (any size) and config.json; int64 keeps them portable
MAX_STEPS = 10**9
MAX_TOKENS = 1_000_000


def check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be between 0 and 2**63-1, got {seed}")
    return seed


def check_count(n: int, flag: str, most: int) -> int:
    if not 0 < n <= most:
        raise UserError(f"{flag} must be between 1 and {most:,}, got {n}")
    return n


def check_steps(steps: int | None, flag: str = "--steps") -> int | None:
    if steps is not None and not 0 < steps <= MAX_STEPS:
        raise UserError(f"{flag} must be between 1 and {MAX_STEPS:,}, got {steps}")
    return steps


def install_hint(extra: str) -> str:
    """The pip command that adds an extra to this installation: `pip install 'workbench[EXTRA]'`
    from an index, `pip install -e 'SOURCE[EXTRA]'` for a clone installed with -e (SOURCE is `.`
    from inside it), which is how most users of a research tool have it."""
    try:
        url = json.loads(importlib.metadata.distribution("workbench").read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        url = {}
    if not url.get("dir_info", {}).get("editable"):
        return f"pip install 'workbench[{extra}]'"
    source = Path(unquote(urlparse(url.get("url", "")).path) or ".").resolve()
    where = "." if source == Path.cwd().resolve() else os.path.relpath(source)
    return f"pip install -e '{where}[{extra}]'"


def optional_module(module: str, extra: str, what: str, needs: str | None = None) -> ModuleType:
    """An optional library, imported when first needed; missing, one line naming the extra to
    install: "WHAT needs NEEDS: pip install 'workbench[EXTRA]'" (NEEDS: the module's package;
    the command as install_hint gives it).  Callers import it here, not at the top, so that
    everything else works without it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs {needs or module.split('.')[0]}: {install_hint(extra)}") from None
