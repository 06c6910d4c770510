"""Experiment specs: one TOML file describes a grid of runs, its evals and its report.

    name = "addition_formats"              # default: the file's stem
    description = "plain vs reversed answers ..."
    budget_minutes = 20                    # the CPU time it is meant to take (reported)
    seeds = [1, 2]
    jobs = 2                               # runs at a time (each gets cores / jobs threads)

    [base]                                 # what every variant starts from
    task = "addition"
    preset = "addition"
    steps = 1500
    target_acc = 0                         # 0: always train all steps
    set = { "task.max_digits" = 3 }        # like --set
    device = "cuda"                        # like --device (default auto)
    resources = { num_cpus = 2, num_gpus = 0.25 }  # what one run asks of an executor (below)

    [[variant]]
    name = "format"
    grid = { "task.reverse_answer" = [true, false], "task.mask_prompt" = [true, false] }

    [[variant]]
    name = "finetune"
    init_from = "pretrain"                 # an earlier variant: start from its run of the same seed
    set = { "train.lr" = 3e-4 }

    [[eval]]                               # scored on every finished run
    split = "test"
    n = 2000
    by = ["a_digits"]
    set = { "task.ood_sampling" = "any" }  # evaluation-only task changes
    heatmap = "digits"                     # evals sharing a heatmap name are drawn in one plot

    [report]
    metrics = ["test.accuracy", "val_loss", "steps", "train_time", "steps_to:val_acc>=0.99"]
    plot_x = "task.train_size"             # also plot each metric against this variant key

A variant's keys override base's; `grid` expands one variant into the product of its
values, and `cases = [{...}, {...}]` into a list of alternatives (each a table of
section.key = value with an optional `name`; `{}` is the variant itself).  Errors name the file, the line and the key.

A spec expands to at most MAX_RUNS = 10,000 runs: the sum over its [[variant]] tables of
(product of the grid's value counts) x cases x seeds, counted before any variant is made (more
is refused in one line: trim the grids or split the spec).  A spec file is UTF-8 TOML of at most
4 MiB (MAX_SPEC_BYTES), nested no deeper than the parser's stack allows (a few hundred levels).

`resources` (in base or a variant): `num_cpus` is the run's thread count (OMP_NUM_THREADS) and
the CPUs Ray reserves for it; `num_gpus` (Ray only) the GPUs it reserves, a share of one (at
most 1) or a whole number. Without it, `--per-gpu K` reserves 1/K, and `device = "cuda"` a
whole GPU; Ray shows a run no GPU at all if it reserves none. The local executor shares out
GPUs with `--gpus` and `--per-gpu` instead.

A spec is code, not data: `include = ["my_tasks.py"]` (like `workbench train --include`)
imports and so executes that Python file, in `workbench run` and in every training and
eval subprocess it starts. Run only specs whose includes you trust.

Names become folder and file names: the spec's `name` (runs/spec-NAME), variant names
(VARIANT/seedS), case names and grid keys and values (joined into variant names as
`.key=value`), eval names (eval-NAME.json), heatmap names (heatmap-NAME.png) and plot_x
(METRIC-vs-X.png). Each must be 1 to 128 ASCII letters, digits and `_ . - = , +`, not
starting with `.` or `-` (so never `.` or `..`): no path separators (`/`, `\\`, or look-alikes
such as U+2215), no spaces, control characters or NUL. Variant, eval and heatmap names that
differ only in case are refused too: on a case-insensitive file system (macOS, Windows) they
would share a file. A spec named by its file (no `name` key) is not checked: its stem is one
existing file name, and it is always prefixed by `spec-`. Seeds must be integers (seedS).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.errors import UserError
from experiments.runspec import resolve_spec

LOG_METRICS = ("val_loss", "best_val_loss", "train_loss", "val_acc", "train_acc", "steps", "train_time")
EVAL_METRICS = ("accuracy", "loss", "trace_valid")
_STEPS_TO = re.compile(r"^steps_to:(\w+)>=([0-9.]+)$")
# A spec is a page of TOML: 4 MiB is far beyond any real one, and tomllib parses that in about a second.
MAX_SPEC_BYTES = 4 * 2**20
# The runs (variants x seeds) one spec may expand to, counted from its grids, cases and seeds
# before anything is expanded: planning holds every run in memory and prints a line for each,
# and 10,000 runs is already days of training; more is a typo in a grid, or wants several specs.
MAX_RUNS = 10_000

_TOP = {"name", "description", "budget_minutes", "seeds", "jobs", "base", "variant", "eval", "report"}
_RUN_KEYS = {"task", "preset", "steps", "target_acc", "set", "include", "device", "resources"}
_RESOURCES = {"num_cpus", "num_gpus"}
DEVICES = ("auto", "cpu", "cuda", "mps")
_VARIANT = _RUN_KEYS | {"name", "grid", "cases", "init_from", "seeds"}
_EVAL = {"name", "split", "n", "by", "set", "heatmap"}
_REPORT = {"metrics", "plot_x"}
# where each key is allowed, for the error that names a misplaced one's table
_HOMES = (("the top level", _TOP), ("[base]", _RUN_KEYS), ("a [[variant]]", _VARIANT), ("an [[eval]]", _EVAL),
          ("[report]", _REPORT), ("resources", _RESOURCES))

# One allow-list for every name that becomes part of a path (see the docstring): ASCII only,
# so no look-alike slashes or normalisation surprises; no leading "." (hidden files, "." and
# "..") or "-" (it would read as an option); 128 bytes leaves room under the file systems'
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
    sets: tuple[tuple[str, Any], ...] = ()
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


class _Reader:
    """Validation helpers that know the file's text, to point at the offending line."""

    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def fail(self, key: str, msg: str, near: str = "") -> None:
        raise UserError(f"{self.path}:{self.line_of(key, near)}: {key}: {msg}")

    def line_of(self, key: str, near: str = "") -> int:
        """The line of key; with `near` (an offending string value), the first line from there on
        that holds it quoted, since a leaf such as `name` occurs in many tables."""
        first = self._line_of_key(key)
        if near:
            quoted = (f'"{near}"', f"'{near}'")
            for i, line in enumerate(self.lines[first - 1:], first):
                if any(q in line for q in quoted):
                    return i
        return first

    def _line_of_key(self, key: str) -> int:
        leaf = key.rsplit(".", 1)[-1].split("[")[0]
        for cand in (key, leaf):  # a dotted --set key as written ("model.pos" = ...), else its last part
            pat = re.compile(rf'(^|[{{,\s])"?{re.escape(cand)}"?\s*=|^\s*\[\[?{re.escape(cand)}\]\]?')
            for i, line in enumerate(self.lines, 1):
                if pat.search(line.split("#")[0]):
                    return i
        return 1

    def name(self, key: str, value: str, what: str, near: str | None = None) -> str:
        """Check a name that becomes part of a path against the one allow-list rule."""
        why = name_problem(value)
        if why:
            self.fail(key, f"{what} {_short(value)} {why}; a name is 1-{NAME_MAX} ASCII letters, digits "
                      f"and _ . - = , + not starting with . or -", value if near is None else near)
        return value

    def distinct_ignoring_case(self, key: str, names, what: str) -> None:
        seen: dict[str, str] = {}
        for n in names:
            other = seen.setdefault(n.casefold(), n)
            if other != n:
                self.fail(key, f"{what} {other!r} and {n!r} differ only in case; on a case-insensitive file "
                          f"system (macOS, Windows) they would share one file", n)

    def check_keys(self, table: dict, allowed: set[str], where: str) -> None:
        for k in table:
            if k not in allowed:
                homes = [place for place, keys in _HOMES if k in keys]
                if homes:  # a key of another table: say which
                    self.fail(f"{where}{k}", f"{k!r} does not go here; it belongs in {' or '.join(homes)}")
                self.fail(f"{where}{k}", f"unknown key; expected one of {', '.join(sorted(allowed))}")

    def typed(self, table: dict, key: str, types, where: str, default=None):
        if key not in table:
            return default
        v = table[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in _tuple(types)):
            names = "/".join(t.__name__ for t in _tuple(types))
            self.fail(f"{where}{key}", f"expected {names}, got {_short(v)}")
        return v


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


def _short(value: Any) -> str:
    """repr, cut short: an error is one line, and a 300-character name (or a list of thousands)
    needs no echo in full."""
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + "..." + ("'" if isinstance(value, str) else "")


def _tuple(t) -> tuple:
    return t if isinstance(t, tuple) else (t,)


def _sets(r: _Reader, table: dict, where: str) -> tuple[tuple[str, Any], ...]:
    sets = r.typed(table, "set", dict, where, {})
    for k, v in sets.items():
        if k.partition(".")[0] not in ("task", "model", "train") or "." not in k:
            r.fail(f"{where}set", f"{k!r} must be section.key with section task, model or train")
        if not isinstance(v, (str, int, float, bool)):
            r.fail(f"{where}set", f"{k}: expected a string, number or boolean, got {_short(v)}")
    return tuple(sets.items())


def _run_settings(r: _Reader, table: dict, where: str, base: RunSettings | None) -> RunSettings:
    task = r.typed(table, "task", str, where, base.task if base else None)
    if not task:
        r.fail(f"{where}task", "missing: every run needs a task")
    steps = r.typed(table, "steps", int, where, base.steps if base else None)
    if steps is not None and steps <= 0:
        r.fail(f"{where}steps", f"must be positive, got {steps}")
    target = r.typed(table, "target_acc", (int, float), where, base.target_acc if base else None)
    if target is not None and not 0 <= target <= 1:
        r.fail(f"{where}target_acc", f"must be in [0, 1], got {target}")
    include = r.typed(table, "include", list, where, list(base.include) if base else [])
    if not all(isinstance(x, str) and x for x in include):
        r.fail(f"{where}include", f"expected a list of Python file paths, got {_short(include)}")
    device = r.typed(table, "device", str, where, base.device if base else None)
    if device is not None and device not in DEVICES:
        r.fail(f"{where}device", f"unknown device {device!r}; use {', '.join(DEVICES)}")
    return RunSettings(
        task=task, preset=r.typed(table, "preset", str, where, base.preset if base else None), steps=steps,
        target_acc=target, sets=(base.sets if base else ()) + _sets(r, table, where), include=tuple(include),
        device=device, resources=_resources(r, table, where, base.resources if base else Resources()),
    )


def _resources(r: _Reader, table: dict, where: str, base: Resources) -> Resources:
    t = r.typed(table, "resources", dict, where, {})
    r.check_keys(t, _RESOURCES, f"{where}resources.")
    cpus = r.typed(t, "num_cpus", int, f"{where}resources.", base.num_cpus)
    if cpus is not None and not 1 <= cpus <= 1024:
        r.fail(f"{where}resources.num_cpus", f"must be an integer from 1 to 1024, got {cpus}")
    gpus = r.typed(t, "num_gpus", (int, float), f"{where}resources.", base.num_gpus)
    if gpus is not None and not (0 < gpus <= 1 or (1 < gpus <= 64 and float(gpus).is_integer())):
        r.fail(f"{where}resources.num_gpus", f"must be a share of one GPU (above 0, at most 1) or a whole "
               f"number of GPUs up to 64, got {gpus}")
    return Resources(cpus, None if gpus is None else float(gpus))


def _seeds(r: _Reader, table: dict, where: str, default: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    seeds = r.typed(table, "seeds", list, where, list(default))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        r.fail(f"{where}seeds", f"expected a non-empty list of integers, got {_short(seeds)}")
    return tuple(seeds)


def _slug(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The spec's TOML table and its text; one line naming the file for a file that is too big,
    not UTF-8 text (with its line), not TOML, or nested too deep for the parser."""
    if not path.is_file():
        raise UserError(f"spec file not found: {path}")
    with open(path, "rb") as f:
        data = f.read(MAX_SPEC_BYTES + 1)  # never more: a huge file is refused unread
    if len(data) > MAX_SPEC_BYTES:
        raise UserError(f"{path}: larger than {MAX_SPEC_BYTES // 2**20} MiB; a spec is a short TOML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); a spec is a TOML file") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few hundred levels exhaust the
        # stack, which takes about a millisecond, so catching it is the cheap check (measured)
        raise UserError(f"{path}: arrays or inline tables nested too deep; a spec needs a few levels") from None


def _count(x: Any, default: int = 1) -> int:
    return len(x) if isinstance(x, list) else default


def count_runs(doc: dict[str, Any]) -> int:
    """The runs a parsed spec expands to: per [[variant]], the product of its grid's value
    counts x its cases x its seeds.  Read from the raw tables before anything is expanded or
    checked (a value of the wrong type counts as one; it is refused later, with its line)."""
    top_seeds = _count(doc.get("seeds"))
    total = 0
    tables = doc.get("variant") if isinstance(doc.get("variant"), list) else []
    for vt in tables or [{}]:
        vt = vt if isinstance(vt, dict) else {}
        grid = vt.get("grid") if isinstance(vt.get("grid"), dict) else {}
        total += math.prod(_count(v) for v in grid.values()) * _count(vt.get("cases")) * _count(
            vt.get("seeds"), top_seeds)
    return total


def load_spec(path: Path) -> Spec:
    """Parse and validate a spec; UserError (file:line: key: why) on any problem.  A spec may
    expand to at most MAX_RUNS runs (variants x seeds), checked before any variant is made."""
    path = Path(path)
    doc, text = _read_toml(path)
    r = _Reader(path, text)
    r.check_keys(doc, _TOP, "")
    runs = count_runs(doc)
    if runs > MAX_RUNS:
        r.fail("variant", f"the spec expands to {runs:,} runs (grid values x cases x seeds, summed over its "
               f"variants); a spec may have at most {MAX_RUNS:,}: trim its grids or split it into several specs")
    seeds = _seeds(r, doc, "", [1337])
    budget = r.typed(doc, "budget_minutes", (int, float), "", None)
    if budget is None or budget <= 0:
        r.fail("budget_minutes", "missing or not positive: state the CPU time the spec is meant to take")
    jobs = r.typed(doc, "jobs", int, "", 1)
    if jobs < 1:
        r.fail("jobs", f"must be at least 1, got {jobs}")
    base_t = r.typed(doc, "base", dict, "", {})
    r.check_keys(base_t, _RUN_KEYS, "base.")
    base = _run_settings(r, base_t, "base.", None) if base_t else None
    variants = _variants(r, doc, base, seeds)
    evals = _evals(r, doc)
    metrics, plot_x = _report(r, doc, evals)
    name = r.typed(doc, "name", str, "", None)
    if name is not None:  # it names the default output directory, runs/spec-NAME
        r.name("name", name, "spec name")
    return Spec(
        name=path.stem if name is None else name, path=path,
        description=r.typed(doc, "description", str, "", ""), budget_minutes=float(budget),
        seeds=tuple(seeds), jobs=jobs, variants=variants, evals=evals, metrics=metrics, plot_x=plot_x,
    )


def _variants(r: _Reader, doc: dict[str, Any], base: RunSettings | None, seeds: tuple[int, ...]) -> tuple[Variant, ...]:
    """Every [[variant]] table expanded into its cases and grid values, in order; names distinct."""
    variants: list[Variant] = []
    known: set[str] = set()  # the names init_from may refer to (a set: one lookup per table)
    for i, vt in enumerate(r.typed(doc, "variant", list, "", []) or [{}]):
        made = _variant_table(r, vt, i, base, seeds, known)
        variants += made
        known.update(n for v in made for n in (v.name, v.name.split("[")[0]))
    seen: set[str] = set()  # a set, not names.count(n) per name: linear in the number of variants
    for v in variants:
        if v.name in seen:
            r.fail("name", f"two variants are named {v.name!r}")
        seen.add(v.name)
    r.distinct_ignoring_case("name", [v.name for v in variants], "variants")
    return tuple(variants)


def _variant_table(r: _Reader, vt: Any, i: int, base: RunSettings | None, seeds: tuple[int, ...],
                   known: set[str]) -> list[Variant]:
    """One [[variant]] table, checked, as the variants its cases and grid expand to."""
    where = f"variant[{i}]."
    if not isinstance(vt, dict):
        r.fail("variant", "each [[variant]] must be a table")
    r.check_keys(vt, _VARIANT, where)
    name = r.typed(vt, "name", str, where, "base" if i == 0 else None)
    if name is None:
        r.fail(f"{where}name", "missing: every [[variant]] after the first needs a name")
    r.name(f"{where}name", name, "variant name")
    settings = _run_settings(r, vt, where, base)
    vseeds = _seeds(r, vt, where, seeds)  # they name folders too (seedS)
    init = r.typed(vt, "init_from", str, where, "")
    if init and init not in known:
        r.fail(f"{where}init_from", f"{init!r} is not an earlier variant")
    grid = _grid(r, vt, where)
    cases = _cases(r, vt, where)
    out = []
    keys = list(grid)
    for case in cases:
        case = dict(case)
        label = case.pop("name", "") or ".".join(f"{k.partition('.')[2]}={_slug(v)}" for k, v in case.items())
        for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            params = tuple(case.items()) + tuple(zip(keys, combo))
            vname = name + (f".{label}" if label else "") + "".join(
                f".{k.partition('.')[2]}={_slug(v)}" for k, v in zip(keys, combo))
            r.name(f"{where}name", vname, "variant name (with its case and grid values)", near=name)
            run = dataclasses.replace(settings, sets=settings.sets + params)
            out.append(Variant(vname, run, vseeds, init, params))
    return out


def _grid(r: _Reader, vt: dict[str, Any], where: str) -> dict[str, list]:
    grid = r.typed(vt, "grid", dict, where, {})
    for k, vals in grid.items():
        if k.partition(".")[0] not in ("task", "model", "train") or not isinstance(vals, list) or not vals:
            r.fail(f"{where}grid", f"{k!r}: expected section.key = [values, ...]")
        for val in vals:  # each becomes `.key=value` in a variant's folder name
            if not isinstance(val, (str, int, float, bool)):
                r.fail(f"{where}grid", f"{k}: expected strings, numbers or booleans, got {_short(val)}")
            r.name(f"{where}grid", f"{k.partition('.')[2]}={_slug(val)}", "folder name part", near=_slug(val))
    return grid


def _cases(r: _Reader, vt: dict[str, Any], where: str) -> list[dict[str, Any]]:
    cases = r.typed(vt, "cases", list, where, [{}])
    for case in cases:
        bad = [k for k in (case if isinstance(case, dict) else {"?": 0}) if k != "name"
               and (k.partition(".")[0] not in ("task", "model", "train") or "." not in k)]
        if not isinstance(case, dict) or bad:
            r.fail(f"{where}cases", f"each case is a table of section.key = value (and an optional name); "
                   f"got {_short(case)}")
        if "name" in case:
            if not isinstance(case["name"], str):
                r.fail(f"{where}cases", f"a case's name must be a string, got {_short(case['name'])}")
            r.name(f"{where}cases", case["name"], "case name")
        else:  # the label is made of the values, and goes into the folder name
            for k, val in case.items():
                if not isinstance(val, (str, int, float, bool)):
                    r.fail(f"{where}cases", f"{k}: expected a string, number or boolean, got {_short(val)}")
                r.name(f"{where}cases", f"{k.partition('.')[2]}={_slug(val)}", "folder name part",
                       near=_slug(val))
    return cases


def _evals(r: _Reader, doc: dict[str, Any]) -> tuple[EvalSpec, ...]:
    evals = []
    for i, et in enumerate(r.typed(doc, "eval", list, "", [])):
        where = f"eval[{i}]."
        if not isinstance(et, dict):
            r.fail("eval", "each [[eval]] must be a table")
        r.check_keys(et, _EVAL, where)
        split = r.typed(et, "split", str, where, "test")
        n = r.typed(et, "n", int, where, 1000)
        if n <= 0:
            r.fail(f"{where}n", f"must be positive, got {n}")
        by = r.typed(et, "by", list, where, [])
        if not all(isinstance(b, str) and b for b in by):
            r.fail(f"{where}by", f"expected a list of bucket column names, got {_short(by)}")
        name = r.typed(et, "name", str, where, split)
        r.name(f"{where}{'name' if 'name' in et else 'split'}", name, "eval name (it names eval-NAME.json)")
        heatmap = r.typed(et, "heatmap", str, where, name)
        r.name(f"{where}heatmap", heatmap, "heatmap name (it names heatmap-NAME.png)")
        evals.append(EvalSpec(name, split, n, tuple(by), _sets(r, et, where), heatmap))
    names = [e.name for e in evals]
    if len(set(names)) != len(names):
        r.fail("eval", "two [[eval]] tables have the same name; give each a distinct `name`")
    r.distinct_ignoring_case("eval", names, "[[eval]] names")
    r.distinct_ignoring_case("heatmap", list(dict.fromkeys(e.heatmap for e in evals)), "heatmap names")
    return tuple(evals)


def _report(r: _Reader, doc: dict[str, Any], evals: tuple[EvalSpec, ...]) -> tuple[tuple[str, ...], str]:
    """[report]: its metrics, each one the report can compute, and plot_x."""
    report = r.typed(doc, "report", dict, "", {})
    r.check_keys(report, _REPORT, "report.")
    metrics = tuple(r.typed(report, "metrics", list, "report.", ["val_loss", "steps", "train_time"]))
    eval_names = {e.name for e in evals}
    for m in metrics:
        head, _, tail = str(m).partition(".")
        ok = m in LOG_METRICS or _STEPS_TO.match(str(m)) or (head in eval_names and tail in EVAL_METRICS)
        if not ok:
            r.fail("report.metrics", f"unknown metric {_short(m)}; use {', '.join(LOG_METRICS)}, "
                   f"EVAL.accuracy|loss|trace_valid (EVAL: an [[eval]] name) or steps_to:val_acc>=0.99")
    plot_x = r.typed(report, "plot_x", str, "report.", "")
    if plot_x:  # its last part names the metric-vs-X.png plots
        r.name("report.plot_x", plot_x, "plot_x")
    return metrics, plot_x


def steps_to(metric: str) -> tuple[str, float] | None:
    """'steps_to:val_acc>=0.99' -> ('val_acc', 0.99)."""
    m = _STEPS_TO.match(metric)
    return (m.group(1), float(m.group(2))) if m else None


def tracker_args(spec_name: str, v: Variant, seed: int, log: Sequence[str]) -> list[str]:
    """`--log` for a run of a spec, tagged with the spec, variant and seed (none without --log)."""
    if not log:
        return []
    args = [a for sink in log for a in ("--log", sink)]
    return args + ["--tag", f"spec={spec_name}", "--tag", f"variant={v.name}", "--tag", f"seed={seed}"]


def train_args(v: Variant, seed: int, out: Path, init_dir: Path | None) -> list[str]:
    """The `workbench train` arguments for one run of a variant."""
    s = v.run
    args = ["train", "--task", s.task, "--seed", str(seed), "--out", str(out), "--quiet"]
    if s.preset:
        args += ["--preset", s.preset]
    if s.steps is not None:
        args += ["--steps", str(s.steps)]
    if s.target_acc is not None:
        args += ["--target-acc", str(s.target_acc)]
    for k, val in s.sets:
        args += ["--set", f"{k}={_slug(val)}"]
    for inc in s.include:
        args += ["--include", inc]
    if init_dir is not None:
        args += ["--init-from", str(init_dir)]
    if s.device:
        args += ["--device", s.device]
    return args


def eval_args(e: EvalSpec, run: Path, out: Path, device: str | None = None) -> list[str]:
    args = ["eval", str(run), "--split", e.split, "--n", str(e.n), "--format", "json", "--out", str(out)]
    if device:
        args += ["--device", device]
    if e.by:
        args += ["--by", ",".join(e.by)]
    for k, val in e.sets:
        args += ["--set", f"{k}={_slug(val)}"]
    return args


def validate_against_registry(spec: Spec) -> None:
    """Unknown tasks, presets and --set keys are caught before anything runs (file:line: key)."""
    # the text only places errors: a file changed since load_spec must not fail here instead
    r = _Reader(spec.path, spec.path.read_text(encoding="utf-8", errors="replace"))
    for v in spec.variants:
        sets = [f"{k}={_slug(val)}" for k, val in v.run.sets]
        try:
            if v.init_from:  # the model comes from the source run; check task and train keys only
                sets = [s for s in sets if not s.startswith("model.")]
            resolve_spec(v.run.task, v.run.preset, sets, v.run.steps, spec.seeds[0], list(v.run.include))
        except UserError as e:
            key = next((k for k, _ in v.run.sets if k.partition(".")[2] in str(e)), "task")
            raise UserError(f"{spec.path}:{r.line_of(key)}: variant {v.name}: {e}") from None
