"""Stage 2 of loading a sweep spec: every key known and in its place, every value of its type and
range, every name a valid file name; the [[variant]] tables still as written (not expanded).

check_spec is a pure function of the parsed file (specparse.SpecSource); what it refuses is one
line naming the file, the line and the key.  Its CheckedSpec is what specexpand expands.  The
size check (count_runs, at most MAX_RUNS runs) comes first, before any table is read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from experiments.devices import check_device_name
from experiments.errors import UserError
from experiments.sweep.specparse import SpecSource
from experiments.sweep.spectypes import (EVAL_METRICS, LOG_METRICS, MAX_RUNS, NAME_MAX, STEPS_TO, EvalSpec,
                                         Resources, RunSettings, name_problem, slug)

_TOP = {"name", "description", "budget_minutes", "seeds", "jobs", "base", "variant", "eval", "report"}
_RUN_KEYS = {"task", "preset", "steps", "target_acc", "set", "include", "device", "resources"}
_RESOURCES = {"num_cpus", "num_gpus"}
_VARIANT = _RUN_KEYS | {"name", "grid", "cases", "init_from", "seeds"}
_EVAL = {"name", "split", "n", "by", "set", "heatmap"}
_REPORT = {"metrics", "plot_x"}
# where each key is allowed, for the error that names a misplaced one's table
_HOMES = (("the top level", _TOP), ("[base]", _RUN_KEYS), ("a [[variant]]", _VARIANT), ("an [[eval]]", _EVAL),
          ("[report]", _REPORT), ("resources", _RESOURCES))
_SECTIONS = ("task", "model", "train")


@dataclass(frozen=True)
class Case:
    """One of a [[variant]]'s `cases`: its section.key = value pairs, and its name ("": none,
    so its values label it)."""

    sets: tuple[tuple[str, Any], ...]
    name: str = ""


@dataclass(frozen=True)
class VariantTable:
    """One [[variant]] table, checked, before its grid and cases are expanded."""

    where: str  # "variant[I]." : how errors name its keys
    name: str
    run: RunSettings
    seeds: tuple[int, ...]
    init_from: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...]  # section.key, its values
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class CheckedSpec:
    """A spec file checked, its variant tables not yet expanded (specexpand.expand_spec)."""

    source: SpecSource
    name: str
    description: str
    budget_minutes: float
    seeds: tuple[int, ...]
    jobs: int
    tables: tuple[VariantTable, ...]
    evals: tuple[EvalSpec, ...]
    metrics: tuple[str, ...]
    plot_x: str


# ---- what every stage checks with --------------------------------------------------------------

def short(value: Any) -> str:
    """repr, cut short: an error is one line, and a 300-character name (or a list of thousands)
    needs no echo in full."""
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + "..." + ("'" if isinstance(value, str) else "")


def check_name(src: SpecSource, key: str, value: str, what: str, near: str | None = None) -> str:
    """Check a name that becomes part of a path against the one allow-list rule (name_problem)."""
    why = name_problem(value)
    if why:
        src.fail(key, f"{what} {short(value)} {why}; a name is 1-{NAME_MAX} ASCII letters, digits "
                 f"and _ . - = , + not starting with . or -", value if near is None else near)
    return value


def distinct_ignoring_case(src: SpecSource, key: str, names: Iterable[str], what: str) -> None:
    seen: dict[str, str] = {}
    for n in names:
        other = seen.setdefault(n.casefold(), n)
        if other != n:
            src.fail(key, f"{what} {other!r} and {n!r} differ only in case; on a case-insensitive file "
                     f"system (macOS, Windows) they would share one file", n)


def _check_keys(src: SpecSource, table: dict, allowed: set[str], where: str) -> None:
    for k in table:
        if k not in allowed:
            homes = [place for place, keys in _HOMES if k in keys]
            if homes:  # a key of another table: say which
                src.fail(f"{where}{k}", f"{k!r} does not go here; it belongs in {' or '.join(homes)}")
            src.fail(f"{where}{k}", f"unknown key; expected one of {', '.join(sorted(allowed))}")


def _typed(src: SpecSource, table: dict, key: str, types, where: str, default=None):
    if key not in table:
        return default
    v = table[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        src.fail(f"{where}{key}", f"expected {'/'.join(t.__name__ for t in types)}, got {short(v)}")
    return v


def _is_set_key(k: Any) -> bool:
    return isinstance(k, str) and k.partition(".")[0] in _SECTIONS and "." in k


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


# ---- the size, before anything is read ------------------------------------------------------------

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


# ---- the stage ----------------------------------------------------------------------------------

def check_spec(src: SpecSource) -> CheckedSpec:
    """Check a parsed spec; UserError (file:line: key: why) on any problem.  A spec may expand to
    at most MAX_RUNS runs (variants x seeds), checked before anything else is read."""
    doc = src.doc
    _check_keys(src, doc, _TOP, "")
    runs = count_runs(doc)
    if runs > MAX_RUNS:
        src.fail("variant", f"the spec expands to {runs:,} runs (grid values x cases x seeds, summed over its "
                 f"variants); a spec may have at most {MAX_RUNS:,}: trim its grids or split it into several specs")
    seeds = _seeds(src, doc, "", [1337])
    budget = _typed(src, doc, "budget_minutes", (int, float), "", None)
    if budget is None or budget <= 0:
        src.fail("budget_minutes", "missing or not positive: state the CPU time the spec is meant to take")
    jobs = _typed(src, doc, "jobs", int, "", 1)
    if jobs < 1:
        src.fail("jobs", f"must be at least 1, got {jobs}")
    base_t = _typed(src, doc, "base", dict, "", {})
    _check_keys(src, base_t, _RUN_KEYS, "base.")
    base = _run_settings(src, base_t, "base.", None) if base_t else None
    tables = tuple(_variant_table(src, vt, i, base, seeds)
                   for i, vt in enumerate(_typed(src, doc, "variant", list, "", []) or [{}]))
    evals = _evals(src, doc)
    metrics, plot_x = _report(src, doc, evals)
    name = _typed(src, doc, "name", str, "", None)
    if name is not None:  # it names the default output directory, runs/spec-NAME
        check_name(src, "name", name, "spec name")
    return CheckedSpec(source=src, name=src.path.stem if name is None else name,
                       description=_typed(src, doc, "description", str, "", ""), budget_minutes=float(budget),
                       seeds=seeds, jobs=jobs, tables=tables, evals=evals, metrics=metrics, plot_x=plot_x)


def _seeds(src: SpecSource, table: dict, where: str, default: Iterable[int]) -> tuple[int, ...]:
    seeds = _typed(src, table, "seeds", list, where, list(default))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        src.fail(f"{where}seeds", f"expected a non-empty list of integers, got {short(seeds)}")
    return tuple(seeds)


def _sets(src: SpecSource, table: dict, where: str) -> tuple[tuple[str, Any], ...]:
    sets = _typed(src, table, "set", dict, where, {})
    for k, v in sets.items():
        if not _is_set_key(k):
            src.fail(f"{where}set", f"{k!r} must be section.key with section task, model or train")
        if not _scalar(v):
            src.fail(f"{where}set", f"{k}: expected a string, number or boolean, got {short(v)}")
    return tuple(sets.items())


def _run_settings(src: SpecSource, table: dict, where: str, base: RunSettings | None) -> RunSettings:
    """A table's run keys over base's.  target_acc's range is TrainConfig's to check (the run's
    settings resolve through it: specfile.validate_against_registry); here only its type."""
    task = _typed(src, table, "task", str, where, base.task if base else None)
    if not task:
        src.fail(f"{where}task", "missing: every run needs a task")
    steps = _typed(src, table, "steps", int, where, base.steps if base else None)
    if steps is not None and steps <= 0:
        src.fail(f"{where}steps", f"must be positive, got {steps}")
    target = _typed(src, table, "target_acc", (int, float), where, base.target_acc if base else None)
    include = _typed(src, table, "include", (list, str), where, list(base.include) if base else [])
    include = [include] if isinstance(include, str) else include  # one file, as `train --include` takes it
    if not all(isinstance(x, str) and x for x in include):
        src.fail(f"{where}include", f"expected a list of Python file paths, got {short(include)}")
    device = _typed(src, table, "device", str, where, base.device if base else None)
    if device is not None:
        try:
            check_device_name(device)
        except UserError as e:
            src.fail(f"{where}device", str(e))
    return RunSettings(
        task=task, preset=_typed(src, table, "preset", str, where, base.preset if base else None), steps=steps,
        target_acc=target, sets=(base.sets if base else ()) + _sets(src, table, where), include=tuple(include),
        device=device, resources=_resources(src, table, where, base.resources if base else Resources()),
    )


def _resources(src: SpecSource, table: dict, where: str, base: Resources) -> Resources:
    t = _typed(src, table, "resources", dict, where, {})
    _check_keys(src, t, _RESOURCES, f"{where}resources.")
    cpus = _typed(src, t, "num_cpus", int, f"{where}resources.", base.num_cpus)
    if cpus is not None and not 1 <= cpus <= 1024:
        src.fail(f"{where}resources.num_cpus", f"must be an integer from 1 to 1024, got {cpus}")
    gpus = _typed(src, t, "num_gpus", (int, float), f"{where}resources.", base.num_gpus)
    if gpus is not None and not (0 < gpus <= 1 or (1 < gpus <= 64 and float(gpus).is_integer())):
        src.fail(f"{where}resources.num_gpus", f"must be a share of one GPU (above 0, at most 1) or a whole "
                 f"number of GPUs up to 64, got {gpus}")
    return Resources(cpus, None if gpus is None else float(gpus))


def _variant_table(src: SpecSource, vt: Any, i: int, base: RunSettings | None,
                   seeds: tuple[int, ...]) -> VariantTable:
    """One [[variant]] table, checked; its init_from is checked once the earlier ones are expanded."""
    where = f"variant[{i}]."
    if not isinstance(vt, dict):
        src.fail("variant", "each [[variant]] must be a table")
    _check_keys(src, vt, _VARIANT, where)
    name = _typed(src, vt, "name", str, where, "base" if i == 0 else None)
    if name is None:
        src.fail(f"{where}name", "missing: every [[variant]] after the first needs a name")
    check_name(src, f"{where}name", name, "variant name")
    settings = _run_settings(src, vt, where, base)
    vseeds = _seeds(src, vt, where, seeds)  # they name folders too (seedS)
    init = _typed(src, vt, "init_from", str, where, "")
    return VariantTable(where, name, settings, vseeds, init, _grid(src, vt, where), _cases(src, vt, where))


def _grid(src: SpecSource, vt: dict[str, Any], where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    grid = _typed(src, vt, "grid", dict, where, {})
    for k, vals in grid.items():
        if k.partition(".")[0] not in _SECTIONS or not isinstance(vals, list) or not vals:
            src.fail(f"{where}grid", f"{k!r}: expected section.key = [values, ...]")
        for val in vals:  # each becomes `.key=value` in a variant's folder name
            if not _scalar(val):
                src.fail(f"{where}grid", f"{k}: expected strings, numbers or booleans, got {short(val)}")
            check_name(src, f"{where}grid", f"{k.partition('.')[2]}={slug(val)}", "folder name part", near=slug(val))
    return tuple((k, tuple(vals)) for k, vals in grid.items())


def _cases(src: SpecSource, vt: dict[str, Any], where: str) -> tuple[Case, ...]:
    cases = _typed(src, vt, "cases", list, where, [{}])
    for case in cases:
        bad = [k for k in (case if isinstance(case, dict) else {"?": 0}) if k != "name" and not _is_set_key(k)]
        if not isinstance(case, dict) or bad:
            src.fail(f"{where}cases", f"each case is a table of section.key = value (and an optional name); "
                     f"got {short(case)}")
        if "name" in case:
            if not isinstance(case["name"], str):
                src.fail(f"{where}cases", f"a case's name must be a string, got {short(case['name'])}")
            check_name(src, f"{where}cases", case["name"], "case name")
        else:  # the label is made of the values, and goes into the folder name
            for k, val in case.items():
                if not _scalar(val):
                    src.fail(f"{where}cases", f"{k}: expected a string, number or boolean, got {short(val)}")
                check_name(src, f"{where}cases", f"{k.partition('.')[2]}={slug(val)}", "folder name part",
                           near=slug(val))
    return tuple(Case(tuple((k, v) for k, v in c.items() if k != "name"), c.get("name", "")) for c in cases)


def _evals(src: SpecSource, doc: dict[str, Any]) -> tuple[EvalSpec, ...]:
    evals = []
    for i, et in enumerate(_typed(src, doc, "eval", list, "", [])):
        where = f"eval[{i}]."
        if not isinstance(et, dict):
            src.fail("eval", "each [[eval]] must be a table")
        _check_keys(src, et, _EVAL, where)
        split = _typed(src, et, "split", str, where, "test")
        n = _typed(src, et, "n", int, where, 1000)
        if n <= 0:
            src.fail(f"{where}n", f"must be positive, got {n}")
        by = _typed(src, et, "by", list, where, [])
        if not all(isinstance(b, str) and b for b in by):
            src.fail(f"{where}by", f"expected a list of bucket column names, got {short(by)}")
        name = _typed(src, et, "name", str, where, split)
        check_name(src, f"{where}{'name' if 'name' in et else 'split'}", name, "eval name (it names eval-NAME.json)")
        heatmap = _typed(src, et, "heatmap", str, where, name)
        check_name(src, f"{where}heatmap", heatmap, "heatmap name (it names heatmap-NAME.png)")
        evals.append(EvalSpec(name, split, n, tuple(by), _sets(src, et, where), heatmap))
    names = [e.name for e in evals]
    if len(set(names)) != len(names):
        src.fail("eval", "two [[eval]] tables have the same name; give each a distinct `name`")
    distinct_ignoring_case(src, "eval", names, "[[eval]] names")
    distinct_ignoring_case(src, "heatmap", list(dict.fromkeys(e.heatmap for e in evals)), "heatmap names")
    return tuple(evals)


def _report(src: SpecSource, doc: dict[str, Any], evals: tuple[EvalSpec, ...]) -> tuple[tuple[str, ...], str]:
    """[report]: its metrics, each one the report can compute, and plot_x."""
    report = _typed(src, doc, "report", dict, "", {})
    _check_keys(src, report, _REPORT, "report.")
    metrics = tuple(_typed(src, report, "metrics", list, "report.", ["val_loss", "steps", "train_time"]))
    eval_names = {e.name for e in evals}
    for m in metrics:
        head, _, tail = str(m).partition(".")
        ok = m in LOG_METRICS or STEPS_TO.match(str(m)) or (head in eval_names and tail in EVAL_METRICS)
        if not ok:
            src.fail("report.metrics", f"unknown metric {short(m)}; use {', '.join(LOG_METRICS)}, "
                     f"EVAL.accuracy|loss|trace_valid (EVAL: an [[eval]] name) or steps_to:val_acc>=0.99")
    plot_x = _typed(src, report, "plot_x", str, "report.", "")
    if plot_x:  # its last part names the metric-vs-X.png plots
        check_name(src, "report.plot_x", plot_x, "plot_x")
    return metrics, plot_x
