"""A sweep spec once loaded (specfile.load_spec): its variants, evals and report, and the rules
for the names that become folder and file names.  Plain values, no I/O: the runner pickles a
Spec into every job it hands a Ray worker."""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG_METRICS = ("val_loss", "best_val_loss", "train_loss", "val_acc", "train_acc", "steps", "train_time")
EVAL_METRICS = ("accuracy", "loss", "trace_valid")
STEPS_TO = re.compile(r"^steps_to:(\w+)>=([0-9.]+)$")
# The runs (variants x seeds) one spec may expand to, counted from its grids, cases and seeds
# before anything is expanded: planning holds every run in memory and prints a line for each,
# and 10,000 runs is already days of training; more is a typo in a grid, or wants several specs.
MAX_RUNS = 10_000

# One allow-list for every name that becomes part of a path (see specfile's docstring): ASCII
# only, so no look-alike slashes or normalisation surprises; no leading "." (hidden files, "."
# and "..") or "-" (it would read as an option); 128 bytes leaves room under the file systems'
# 255-byte limit for what is added to a name (eval-, .json, .log, a grid's .key=value parts).
NAME_MAX = 128
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_.-=,+")


@dataclass(frozen=True)
class Resources:
    """What one run asks of an executor; None: the executor's default."""

    num_cpus: int | None = None
    num_gpus: float | None = None


@dataclass(frozen=True)
class RunSettings:
    task: str
    preset: str | None = None
    steps: int | None = None
    target_acc: float | None = None
    sets: tuple[tuple[str, Any], ...] = ()  # (section.key, the TOML value), base's first
    include: tuple[str, ...] = ()
    device: str | None = None  # --device for its train and evals (None: auto)
    resources: Resources = Resources()


@dataclass(frozen=True)
class Variant:
    name: str
    run: RunSettings
    seeds: tuple[int, ...]
    init_from: str = ""  # the name of an earlier variant
    params: tuple[tuple[str, Any], ...] = ()  # the grid values that made it (for plots)


@dataclass(frozen=True)
class EvalSpec:
    name: str
    split: str
    n: int
    by: tuple[str, ...] = ()
    sets: tuple[tuple[str, Any], ...] = ()
    heatmap: str = ""  # evals with the same heatmap name (and two `by` columns) share one plot


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path
    description: str
    budget_minutes: float
    seeds: tuple[int, ...]
    jobs: int
    variants: tuple[Variant, ...]
    evals: tuple[EvalSpec, ...]
    metrics: tuple[str, ...]
    plot_x: str = ""

    def variant(self, name: str) -> Variant:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, Variant]:
        # a dict, made once: the runner looks up each fine-tuning run's source, and a scan per
        # lookup would make planning quadratic in the number of variants
        return {v.name: v for v in self.variants}


def name_problem(name: str) -> str | None:
    """Why `name` cannot be part of a file name, or None when it can (see NAME_MAX)."""
    if not name:
        return "is empty"
    bad = next((c for c in name if c not in _NAME_CHARS), None)
    if bad is not None:
        return f"contains {bad!r}" + (" (a path separator)" if bad in "/\\" else "")
    if name[0] in ".-":
        return f"starts with {name[0]!r}"
    if len(name) > NAME_MAX:  # ASCII by now: characters are bytes
        return f"is longer than {NAME_MAX} bytes"
    return None


def slug(v: Any) -> str:
    """A TOML value as a variant's name writes it (`.key=value`): true and false in lower case."""
    return str(v).lower() if isinstance(v, bool) else str(v)


def steps_to(metric: str) -> tuple[str, float] | None:
    """'steps_to:val_acc>=0.99' -> ('val_acc', 0.99)."""
    m = STEPS_TO.match(metric)
    return (m.group(1), float(m.group(2))) if m else None
