"""A grid's train and eval subprocesses end when the process that started them dies.

`workbench run` (or a Ray worker running one of its runs) starts each run as a subprocess.
Killed with `kill -9`, the runner cannot stop them, and an orphaned trainer would go on
holding its run's lock, so the next `workbench run` could not resume that run.  The runner
puts its pid in the child's environment (`child_env`); the child, first thing (`hold`), asks
Linux to send it SIGTERM when that parent goes (prctl PR_SET_PDEATHSIG).  The trainer treats
SIGTERM like Ctrl-C: it saves a checkpoint and exits, and the rerun resumes from there.

The signal follows the parent *thread* that started the child; the runner's threads wait in
Popen.wait for as long as the child lives, so that is the runner itself.  Elsewhere than
Linux this is a no-op: an orphaned trainer finishes its run on its own, and the rerun waits
for its lock (runjob.wait_for_lock).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

ENV = "WORKBENCH_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env() -> dict[str, str]:
    """What a subprocess's environment needs so that `hold` ties it to this process."""
    return {ENV: str(os.getpid())}


def hold() -> None:
    """Called at start-up: if a runner started us, die (SIGTERM) when it does."""
    parent = os.environ.pop(ENV, None)  # popped: our own children answer to us, not to it
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return  # refused: the child simply outlives its parent, as without a lifeline
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # it died before prctl took effect: the signal will never come
        os.kill(os.getpid(), signal.SIGTERM)
