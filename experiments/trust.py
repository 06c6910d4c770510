"""Which run folders may run their task code without asking: the ones trained on this machine.

A run whose task comes from a Python file (`--include`) keeps a copy of that file in its folder
(RUN/tasks/, rundir.copy_includes) and records the copy's sha256 in config.json.  Loading the run
executes that copy.  A folder can come from anywhere (an exported model is made to be shared), so
its config.json and files are untrusted input: code in it runs only if

  - the run was trained here: config.json carries a seal, an HMAC of the task name and the task
    files' hashes under a key that never leaves this machine (WORKBENCH_HOME/trust.key); a folder
    from elsewhere, or one whose hashes were edited, has no valid seal; or
  - the user opts in for this load, in the spirit of `trust_remote_code`: `--trust-code` on the
    command line, `load_run(..., trust_code=True)` in Python.

The hashes make the seal cover the code itself: editing a sealed file changes its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from pathlib import Path

KEY_FILE = "trust.key"
HOW = "pass --trust-code (in Python: load_run(..., trust_code=True))"


def home() -> Path:
    """workbench's per-user folder: $WORKBENCH_HOME, else $XDG_CONFIG_HOME/workbench, else ~/.config/workbench."""
    if os.environ.get("WORKBENCH_HOME"):
        return Path(os.environ["WORKBENCH_HOME"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "workbench"


def _key(create: bool) -> bytes | None:
    """This machine's sealing key, made on first use (None if it cannot be read or made).

    Made under a temp name and linked into place: os.link fails if another process won the
    race, and then both use the winner's key."""
    path = home() / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        if not create:
            return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".trust.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _message(task: str, hashes: dict[str, str]) -> bytes:
    return json.dumps({"task": task, "include_sha256": dict(sorted(hashes.items()))}, sort_keys=True).encode()


def seal(task: str, hashes: dict[str, str]) -> str | None:
    """The seal a run trained here records (None: no key could be made; the run then needs --trust-code)."""
    key = _key(create=True)
    return None if key is None else hmac.new(key, _message(task, hashes), hashlib.sha256).hexdigest()


def sealed_here(task: str, hashes: dict[str, str], recorded: object) -> bool:
    """Whether `recorded` is this machine's seal over the task name and its files' hashes."""
    key = _key(create=False)
    if key is None or not isinstance(recorded, str):
        return False
    return hmac.compare_digest(hmac.new(key, _message(task, hashes), hashlib.sha256).hexdigest(), recorded)
