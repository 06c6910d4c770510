"""A run's settings: the RunSpec, how flags become one, and what config.json says.

One place for each:
  - resolve_spec: the task's defaults, then its preset, then the flags (--steps, --target-acc,
    --init-from), then --set, make a new run's RunSpec.  `train`, `bench`, `show`, `check` and
    an experiment spec's variants all come through it, so a preset means the same to each.
  - resolve_run: the same from typed values (a sweep spec's TOML values), each checked against
    its field's type once, as `--set` would check it written out (coerce).
  - to_record / from_record: the one writer and the one reader of config.json's layout.
    read_run_spec is how every command reads a run's settings back.
  - spec_to_dict / read_run_spec_file: a RunSpec as a file of its own, how `workbench run` hands a
    run to its `workbench train` subprocess (--run-spec) without flags parsed again.

A RunSpec is all that decides what a run computes; provenance (device, versions, git commit,
time) is recorded beside it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.curriculum_config import check_curriculum
from experiments.errors import UserError, check_steps
from experiments.presets import resolve_preset
from experiments.trust import seal
from experiments.registry import origin_of, task_class
from experiments.rundir import RUN_FORMAT, git_commit, include_files, read_config
from gpt.config import GPTConfig, TrainConfig
from tasks.base import TaskConfig

if TYPE_CHECKING:  # the record names the device; describing a run needs no torch
    import torch


@dataclass(frozen=True)
class RunSpec:
    task: str
    task_config: TaskConfig
    model: GPTConfig
    train: TrainConfig  # every stopping rule included: steps, time_budget_s, target_acc
    seed: int = 1337
    preset: str = ""
    include: tuple[str, ...] = field(default=())  # --include files defining the task
    init_from: str = ""  # a run directory whose weights the run starts from
    world_size: int = 1  # data-parallel processes (torchrun)

    def with_task_options(self, overrides: dict[str, Any]) -> "RunSpec":
        """The same run with task options changed (`workbench eval --set task.K=V`)."""
        return dataclasses.replace(self, task_config=apply_overrides(self.task_config, overrides, "task"))


# ---- a new run: preset, flags, --set ------------------------------------------------------------

def resolve_spec(task: str, preset: str | None = None, sets: list[str] = (), steps: int | None = None,
                 seed: int = 1337, include: list[str] = (), init_from: Path | None = None,
                 target_acc: float | None = None) -> RunSpec:
    """A new run's RunSpec: the task's defaults, the preset's, the flags, then --set.

    --steps also drops the preset's decay length (the schedule spans the new step count);
    --target-acc replaces the preset's stopping rule (0: never stop early)."""
    return _resolve(task, preset, parse_sets(list(sets)), steps, seed, include, init_from, target_acc)


def resolve_run(task: str, preset: str | None = None, overrides: Sequence[tuple[str, Any]] = (),
                steps: int | None = None, seed: int = 1337, include: Sequence[str] = (),
                init_from: Path | None = None, target_acc: float | None = None) -> RunSpec:
    """resolve_spec for typed overrides, (section.key, value) pairs such as a sweep spec's TOML
    values: each value is checked against its field's type here, once (coerce), and means what
    `--set section.key=VALUE` with the value written out would mean."""
    over: dict[str, dict[str, Any]] = {"task": {}, "model": {}, "train": {}}
    for key, value in overrides:
        section, _, name = key.partition(".")
        if section not in over or not name:
            raise UserError(f"{key}: expected section.key with section task, model or train")
        over[section][name] = value
    return _resolve(task, preset, over, steps, seed, include, init_from,
                    None if target_acc is None else float(target_acc), typed=True)  # float: as --target-acc


def _resolve(task: str, preset: str | None, over: dict[str, dict[str, Any]], steps: int | None, seed: int,
             include: Sequence[str], init_from: Path | None, target_acc: float | None,
             typed: bool = False) -> RunSpec:
    cls = task_class(task, include)
    p = resolve_preset(task, preset)
    if typed:  # each value checked against its field's type once, here
        classes = {"task": cls.Config, "model": GPTConfig, "train": TrainConfig}
        over = {section: _coerce_all(classes[section], values, section) for section, values in over.items()}
    task_cfg = apply_overrides(cls.Config(), {**p.task_overrides(), **over["task"]}, "task")
    if init_from is not None:  # the shape comes from the run we start from (its task code never runs)
        source = model_of(read_config(Path(init_from)), Path(init_from))
        model = apply_overrides(source, over["model"], "model")
    else:
        model = apply_overrides(p.model, over["model"], "model")
    train = p.train
    if check_steps(steps) is not None:
        train = dataclasses.replace(train, steps=steps, lr_decay_steps=0)
    if target_acc is not None:
        train = _replace(train, target_acc=target_acc)
    train = apply_overrides(train, over["train"], "train")
    try:
        check_curriculum(train)  # gpt's TrainConfig holds these settings but leaves them to us
    except ValueError as e:
        raise UserError(str(e)) from None
    return RunSpec(task=task, task_config=task_cfg, model=model, train=train, seed=seed, preset=p.name,
                   include=tuple(include), init_from=str(Path(init_from).resolve()) if init_from else "")


def check_target_acc(target_acc: float | None, flag: str = "--target-acc") -> float | None:
    """A stopping rule given on its own (`train --resume --target-acc`), checked by TrainConfig's
    own rule: the one owner of its range."""
    if target_acc is not None:
        try:
            _replace(TrainConfig(), target_acc=target_acc)
        except UserError as e:
            raise UserError(f"{flag}: {e}") from None
    return target_acc


def task_sets_only(sets: list[str], command: str) -> dict[str, str]:
    """The task.* part of --set, for commands that take no model or train options."""
    over = parse_sets(sets)
    if over["model"] or over["train"]:
        raise UserError(f"{command} accepts only task.* overrides in --set")
    return over["task"]


# ---- --set ------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def convert(value: str, typ: Any, key: str) -> Any:
    """Convert a --set string to a dataclass field's declared type."""
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if t == "bool":
            v = value.strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
            raise ValueError
        if t == "int":
            return int(value)
        if t == "float":
            return float(value)
    except ValueError:
        raise UserError(f"{key}: expected {t}, got {value!r}") from None
    return value


def coerce(value: Any, typ: Any, key: str) -> Any:
    """A typed value (a sweep spec's TOML value) as a field of declared type `typ` takes it: what
    convert gives for the value written out, as `--set` would have it, without the round trip
    through text.  A bool is never a number, an int widens to a float, 1 and 0 are a bool's true
    and false, and a text field gets the value as text.  A string goes to convert itself."""
    if isinstance(value, str):
        return convert(value, typ, key)
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "int" and number and isinstance(value, int):
        return value
    if t == "float" and number:
        return float(value)
    if t == "bool" and (isinstance(value, bool) or (type(value) is int and value in (0, 1))):
        return bool(value)
    if t in ("int", "float", "bool"):
        raise UserError(f"{key}: expected {t}, got {_written(value)}")
    return _written(value)


def _written(value: Any) -> str:
    """A value as a spec's TOML (and so --set) writes it: true and false in lower case."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _coerce_all(cls: type, values: dict[str, Any], section: str) -> dict[str, Any]:
    """Each value coerced to its field's type; an unknown key is left for apply_overrides to refuse."""
    types = {f.name: f.type for f in fields(cls) if f.init}
    return {k: coerce(v, types[k], f"{section}.{k}") if k in types else v for k, v in values.items()}


def parse_sets(sets: list[str]) -> dict[str, dict[str, str]]:
    """['model.n_layer=4', ...] -> {'model': {'n_layer': '4'}, ...}"""
    out: dict[str, dict[str, str]] = {"task": {}, "model": {}, "train": {}}
    for item in sets:
        key, eq, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise UserError(f"--set expects section.key=value (e.g. model.n_layer=4), got {item!r}")
        if section not in out:
            raise UserError(f"--set {key}: unknown section {section!r}; use task., model. or train.")
        out[section][name] = value
    return out


def apply_overrides(config: Any, overrides: dict[str, str], section: str) -> Any:
    """Return a copy of a frozen dataclass with string overrides converted and validated."""
    valid = {f.name: f for f in fields(config) if f.init}
    changes = {}
    for name, value in overrides.items():
        if name not in valid:
            keys = ", ".join(f"{section}.{k}" for k in valid)
            close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
            hint = f"did you mean {section}.{close[0]}? " if close else ""
            raise UserError(f"unknown key {section}.{name}; {hint}valid keys: {keys}")
        changes[name] = value if not isinstance(value, str) else convert(value, valid[name].type, f"{section}.{name}")
    return _replace(config, **changes)


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def from_dict(cls: type, d: dict[str, Any], section: str, check: Callable[[Any], None] | None = None) -> Any:
    """Rebuild a config dataclass from config.json, ignoring keys a newer version dropped.
    check: more of the section's checks, which raise ValueError as the config's own do."""
    valid = {f.name: f for f in fields(cls) if f.init}
    for k, v in d.items():
        if k in valid and not _fits(v, valid[k].type):
            raise UserError(f"run config has an invalid {section} section: {k} should be {valid[k].type}, "
                            f"not {type(v).__name__}")
    try:
        config = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in valid})
        if check is not None:
            check(config)
        return config
    except (ValueError, TypeError) as e:
        raise UserError(f"run config has an invalid {section} section: {e}") from None


_SCALARS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _fits(value: Any, declared: Any) -> bool:
    """Whether a config.json value has its field's declared scalar type (other types: not checked
    here; the config's own validation sees them).  A bool is not an int here."""
    name = declared if isinstance(declared, str) else getattr(declared, "__name__", "")
    want = _SCALARS.get(name)
    if want is None:
        return True
    return isinstance(value, want) and (name == "bool" or not isinstance(value, bool))


def _replace(config: Any, **changes: Any) -> Any:
    """dataclasses.replace, with the config's own validation error as a user error."""
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None


# ---- config.json ----------------------------------------------------------------------------------

def to_record(spec: RunSpec, vocab: str, model: GPTConfig, device: torch.device | str,
              copies: dict[str, str] | None = None) -> dict[str, Any]:
    """config.json's content: the spec (with the model as fitted to the task) and provenance.

    copies: the run's copies of its --include files ({RUN-relative path: sha256},
    rundir.copy_includes), which loading the run executes; sealed as trained here (trust.py).
    target_acc is also written at the top level, where runs made before it moved into `train`
    kept it and where scripts read it; null means never stop early."""
    copies = copies or {}
    return {
        "format": RUN_FORMAT,
        "task": {"name": spec.task, "origin": origin_of(spec.task),
                 "include": list(copies), "include_sha256": copies,
                 "include_seal": seal(spec.task, copies) if copies else None,
                 "include_from": [str(Path(p).resolve()) for p in spec.include],
                 "config": to_jsonable(spec.task_config), "vocab": vocab},
        "model": to_jsonable(model),
        "train": to_jsonable(spec.train),
        "seed": spec.seed,
        "preset": spec.preset,
        "device": str(device),
        "torch": importlib.metadata.version("torch"),
        "git": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "target_acc": spec.train.target_acc or None,
        "world_size": spec.world_size,
        "init_from": spec.init_from,
    }


def with_train(record: dict[str, Any], train: TrainConfig) -> dict[str, Any]:
    """A record with its train section (its stopping rules) changed, provenance kept (a resume)."""
    return {**record, "train": to_jsonable(train), "target_acc": train.target_acc or None}


def from_record(record: dict[str, Any], includes: tuple[tuple[str, str | None], ...] = ()) -> RunSpec:
    """The RunSpec config.json records (checked by rundir.check_record); runs written by older
    versions load too.  includes: the task files to load, as rundir.include_files found them."""
    t = record["task"]
    paths = tuple(p for p, _ in includes)
    train = dict(record["train"])
    if "target_acc" not in train:  # written before the rule moved into TrainConfig
        train["target_acc"] = record.get("target_acc") or 0.0
    cls = task_class(t["name"], paths, [sha for _, sha in includes])
    return RunSpec(
        task=t["name"], task_config=from_dict(cls.Config, t.get("config") or {}, "task"),
        model=from_dict(GPTConfig, record["model"], "model"),
        train=from_dict(TrainConfig, train, "train", check_curriculum),
        seed=record.get("seed", 0), preset=record.get("preset") or "", include=paths,
        init_from=record.get("init_from") or "", world_size=record.get("world_size") or 1,
    )


def spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    """A RunSpec as plain JSON values, field by field: what `workbench run` writes for a new run's
    `workbench train --run-spec FILE`.  Unlike config.json (to_record) it holds no provenance, and
    its include files are the user's own, loaded as `--include` loads them."""
    return to_jsonable(spec)


# spec_to_dict's keys: the JSON type of each, checked before a value is read
_SPEC_KEYS = {"task": str, "task_config": dict, "model": dict, "train": dict, "seed": int, "preset": str,
              "include": list, "init_from": str, "world_size": int}


def spec_from_dict(d: Any, where: Path) -> RunSpec:
    """spec_to_dict's RunSpec back; one line naming `where` for anything else."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a run spec (a JSON object), got {type(d).__name__}")
    for key, want in _SPEC_KEYS.items():
        if not isinstance(d.get(key), want) or isinstance(d.get(key), bool):
            raise UserError(f"{where}: {key!r} should be {want.__name__}, not {type(d.get(key)).__name__}")
    if not all(isinstance(p, str) for p in d["include"]):
        raise UserError(f"{where}: 'include' should be a list of file paths")
    cls = task_class(d["task"], d["include"])
    try:
        return RunSpec(task=d["task"], task_config=from_dict(cls.Config, d["task_config"], "task"),
                       model=from_dict(GPTConfig, d["model"], "model"),
                       train=from_dict(TrainConfig, d["train"], "train"), seed=d["seed"], preset=d["preset"],
                       include=tuple(d["include"]), init_from=d["init_from"], world_size=d["world_size"])
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def read_run_spec_file(path: Path) -> RunSpec:
    """The RunSpec in a file spec_to_dict wrote (`workbench train --run-spec FILE`)."""
    try:
        d = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise UserError(f"--run-spec {path}: cannot be read: {e.strerror or e}") from None
    except (ValueError, RecursionError):
        raise UserError(f"--run-spec {path}: not a run spec (UTF-8 JSON) as `workbench run` writes it") from None
    return spec_from_dict(d, Path(path))


def model_of(record: dict[str, Any], run: Path) -> GPTConfig:
    """A run's model config alone: what --init-from needs, with no task code run."""
    return from_dict(GPTConfig, record["model"], f"model (in {run}/config.json)")


def read_run_spec(run: Path, trust_code: bool = False, include: Sequence[str] = ()) -> tuple[RunSpec, dict[str, Any]]:
    """A run directory's RunSpec and its raw record (vocabulary, provenance).

    Its --include files are checked against their recorded hashes before any of them runs, and
    run only for a run trained on this machine or with trust_code (rundir.include_files).  Given
    `include`, the user's own files define the task instead (`eval --include NEW.py`): the run's
    copies are neither checked nor run."""
    record = read_config(run)
    if include:  # no recorded hash to hold them to: loaded as `train --include` loads them, and their
        task_class(record["task"]["name"], include)  # errors are the files', not config.json's
        includes = tuple((str(f), None) for f in include)
    else:
        includes = include_files(Path(run), record["task"], trust_code)
    try:
        return from_record(record, includes), record
    except UserError as e:  # a value config.json holds: say which file holds it
        raise UserError(f"{Path(run) / 'config.json'}: {e}") from None
