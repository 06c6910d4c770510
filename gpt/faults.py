"""Fault injection: a deliberate SIGKILL at one chosen point of a run, for the reliability tests.

    WORKBENCH_FAULT=kill:step=N | kill:eval=N | kill:ckpt=N  ->  Fault  ->  KillPoints  ->  die()

Tests kill exactly where they mean to instead of sleeping and hoping.  The variable is read
once, when the Trainer is built (KillPoints.from_env); unset, the loop pays one integer
comparison per point.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass

FAULT_ENV = "WORKBENCH_FAULT"


class FaultSpecError(ValueError):
    """A malformed WORKBENCH_FAULT."""


@dataclass(frozen=True)
class Fault:
    """Where to die.  WORKBENCH_FAULT is one of

        kill:step=N   during update N (1-based, as metrics.jsonl counts), after its backward
                      pass and before the optimizer step: step N is never logged
        kill:eval=N   during the eval at step N (0 included), after the loss estimate and before
                      the accuracy eval: nothing of that eval is logged or saved
        kill:ckpt=N   while ckpt.pt is written at step N, after its temp file is complete and
                      fsynced, before os.replace: ckpt.pt is still the previous checkpoint

    Under DDP every rank that reaches the point kills itself (eval and ckpt happen on rank 0 only).
    """

    point: str  # step | eval | ckpt
    at: int

    POINTS = ("step", "eval", "ckpt")

    @classmethod
    def parse(cls, text: str | None) -> "Fault | None":
        if not text:
            return None
        m = re.fullmatch(r"\s*kill:(step|eval|ckpt)=(\d+)\s*", text)
        if m is None:
            raise FaultSpecError(f"{FAULT_ENV}={text!r}: expected kill:step=N, kill:eval=N or kill:ckpt=N")
        return cls(m.group(1), int(m.group(2)))

    def at_point(self, point: str) -> int:
        """The step at which to die at this point, or -1 (never: no step is negative)."""
        return self.at if self.point == point else -1


@dataclass(frozen=True)
class KillPoints:
    """The step at which to die at each point, -1 for never: what the loop compares against."""

    step: int = -1
    eval: int = -1
    ckpt: int = -1

    @classmethod
    def from_env(cls) -> "KillPoints":
        """The points WORKBENCH_FAULT names (none when it is unset); FaultSpecError if malformed."""
        fault = Fault.parse(os.environ.get(FAULT_ENV))
        return cls(*(fault.at_point(p) for p in Fault.POINTS)) if fault else cls()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what `kill -9` does: no handler, no cleanup, no flush
