"""Run directories: creating, locking, loading; and the Python API `load_run`.

A run directory holds
    config.json     the fully resolved config (task, model, train, seed, versions)
    metrics.jsonl   one JSON object per logged step
    ckpt.pt         the latest checkpoint        best.pt   the best val loss
    .lock           flock'ed by the process writing it, which also writes its pid there
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import tasks as task_registry
from experiments.config import RunSpec, apply_overrides, from_dict, to_jsonable
from experiments.errors import UserError
from gpt.checkpoint import CheckpointError, atomic_write_text, load_checkpoint
from gpt.generate import greedy_complete
from gpt.model import GPT, GPTConfig
from tasks.data import DataError
from tasks.encode import END


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: no MPS device is available")
    return torch.device(name)


# ---- tasks -------------------------------------------------------------------------------------

from tasks.base import check_contract  # noqa: E402

def task_class(name: str, include: Sequence[str] = ()):
    try:
        for path in include:
            task_registry.include_file(path)
        cls = task_registry.get_task_class(name)
        check_contract(cls)
        return cls
    except (task_registry.TaskNotFound, task_registry.TaskLoadError, ValueError) as e:
        raise UserError(str(e)) from None
    except TypeError as e:  # the class does not meet the Task contract
        raise UserError(f"task {name!r} does not meet the task contract: {e}") from None


def build_task(name: str, overrides: dict[str, Any], include: Sequence[str] = (), base=None):
    """Instantiate a task with --set task.* overrides applied to its (or a given) config."""
    cls = task_class(name, include)
    config = apply_overrides(base if base is not None else cls.Config(), overrides, "task")
    try:
        return cls(config)
    except (DataError, ValueError) as e:
        raise UserError(str(e)) from None


def model_config_for(task, model: GPTConfig) -> GPTConfig:
    """Fit the model to the task: its vocabulary, and a block long enough for its problems."""
    import dataclasses

    cfg = dataclasses.replace(model, vocab_size=len(task.vocab))
    if cfg.pos == "abacus" and not cfg.abacus_digits:
        # abacus indexes digits within numbers; which tokens are digits is the task's business
        digits = tuple(task.vocab.stoi[c] for c in "0123456789" if c in task.vocab.stoi)
        if not digits:
            raise UserError(f"model.pos=abacus: task {task.name!r} has no digit tokens to index")
        cfg = dataclasses.replace(cfg, abacus_digits=digits)
    if task.kind == "text":
        try:
            task.check_block_size(cfg.block_size)
        except DataError as e:
            raise UserError(str(e)) from None
    else:
        need = task.max_length() - 1  # x drops the last character
        if need > cfg.block_size:
            raise UserError(
                f"model.block_size {cfg.block_size} is too small for task {task.name!r}: "
                f"its longest problem needs {need}; pass --set model.block_size={need}"
            )
    return cfg


# ---- run directories ---------------------------------------------------------------------------

def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def include_hashes(include: Sequence[str]) -> dict[str, str]:
    """Each --include file's path (as config.json records it) -> sha256 of the source that ran."""
    out = {}
    for p in include:
        if task_registry.included_sha256(p) is None:  # task_class has normally loaded it already
            try:
                task_registry.include_file(p)
            except (task_registry.TaskNotFound, task_registry.TaskLoadError) as e:
                raise UserError(str(e)) from None
        out[str(Path(p).resolve())] = task_registry.included_sha256(p)
    return out


def check_includes(run: Path, task_record: dict[str, Any]) -> None:
    """Refuse a run whose --include files changed since it was trained: its checkpoint was made
    by other task code.  Checked before the file runs.  Runs recorded before hashes were kept
    have none to compare, and load as before."""
    recorded = task_record.get("include_sha256") or {}
    for p in task_record.get("include", []):
        if not Path(p).is_file():
            raise UserError(f"run {run} needs task file {p}, which no longer exists")
        want = recorded.get(p)
        if not want:
            continue
        try:
            have = task_registry.file_sha256(p)
        except OSError as e:
            raise UserError(f"run {run} needs task file {p}, which cannot be read: {e.strerror}") from None
        if have != want:
            raise UserError(f"task file {p} has changed since run {run} was trained (sha256 {want[:12]} then, "
                            f"{have[:12]} now); restore that version, or train a new run")


def config_record(spec: RunSpec, task, model: GPTConfig, device: torch.device) -> dict[str, Any]:
    return {
        "task": {"name": spec.task, "origin": origin_of(spec.task),
                 "include": [str(Path(p).resolve()) for p in spec.include],
                 "include_sha256": include_hashes(spec.include),
                 "config": to_jsonable(task.config), "vocab": task.vocab.chars},
        "model": to_jsonable(model),
        "train": to_jsonable(spec.train),
        "seed": spec.seed,
        "preset": spec.preset,
        "device": str(device),
        "torch": torch.__version__,
        "git": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def origin_of(name: str) -> str:
    known = task_registry.available()
    return known[name][0] if name in known else "include"


def is_run(path: Path) -> bool:
    return (Path(path) / "config.json").is_file()


def read_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory")
    if not is_run(path):
        raise UserError(f"{path} is not a run directory (no config.json)")
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not isinstance(cfg, dict) or not {"task", "model", "train"} <= cfg.keys():
            raise ValueError("missing sections")
        return cfg
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}/config.json is corrupt: {e}") from None


def write_config(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(Path(path) / "config.json", json.dumps(record, indent=2) + "\n")


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

    @property
    def held(self) -> bool:
        return self._fd is not None

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


class RunLock(FileLock):
    """The lock on a run directory (RUN/.lock), held for the run's life and removed after."""

    def __init__(self, run_dir: Path):
        super().__init__(Path(run_dir) / ".lock", str(run_dir), remove=True)


# ---- loading runs ----------------------------------------------------------------------------

@dataclass
class Run:
    """A trained run: run.model (on its device), run.task, run.config, run.complete(prompts)."""

    path: Path
    config: dict[str, Any]
    task: Any
    model: GPT
    step: int

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    def encode_prompt(self, prompt: str) -> list[int]:
        vocab = self.task.vocab
        if not vocab.contains(prompt):
            bad = "".join(sorted({c for c in prompt if c not in vocab.stoi}))
            raise UserError(f"prompt has characters outside the task's vocabulary: {bad!r}")
        return vocab.encode(prompt)

    def complete(self, prompts: Sequence[str], max_new_tokens: int | None = None, batch_size: int = 1024) -> list[str]:
        """Batched greedy completion; the end token and anything after it are stripped."""
        ids = [self.encode_prompt(p) for p in prompts]
        if max_new_tokens is None:
            max_new_tokens = self.model.config.block_size
        if END not in self.task.vocab.stoi:
            raise UserError(f"task {self.task.name!r} has no end token; use `workbench sample`")
        out = greedy_complete(self.model, ids, self.task.vocab.stoi[END], max_new_tokens, batch_size)
        return [self.task.vocab.decode(o) for o in out]


def load_run(path: str | os.PathLike, device: str = "auto", checkpoint: str = "ckpt.pt",
             task_overrides: dict[str, Any] | None = None) -> Run:
    """Load a run's task and model.  task_overrides change the task for evaluation only."""
    path = Path(path)
    cfg = read_config(path)
    tcfg = cfg["task"]
    name = tcfg["name"]
    include = [p for p in tcfg.get("include", [])]
    check_includes(path, tcfg)
    cls = task_class(name, include)
    base = from_dict(cls.Config, tcfg.get("config", {}), "task")
    task = build_task(name, task_overrides or {}, include, base=base)
    if task.vocab.chars != tcfg.get("vocab", task.vocab.chars):
        raise UserError(f"task {name!r} now has a different vocabulary from the one run {path} was trained on")
    dev = resolve_device(device)
    try:
        ckpt = load_checkpoint(path / checkpoint, map_location=dev)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    mcfg = from_dict(GPTConfig, cfg["model"], "model")
    check_checkpoint(ckpt, task, mcfg, path / checkpoint, tcfg.get("vocab", task.vocab.chars))
    model = GPT(mcfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path / checkpoint} does not match the run's model config: {str(e).splitlines()[0]}") from None
    model.to(dev).eval()
    return Run(path, cfg, task, model, int(ckpt["step"]))


def check_checkpoint(ckpt: dict[str, Any], task, model_cfg: GPTConfig, where: Path, vocab: str | None = None) -> None:
    """Refuse a checkpoint made for another task, vocabulary or model, naming what differs.

    Shapes alone would not catch it: `copy` and `reverse`, or `addition` and `modular`, have
    vocabularies of one size, so the other task's weights would load and answer nonsense."""
    meta = ckpt.get("config", {})
    vocab = task.vocab.chars if vocab is None else vocab
    diffs = []
    if meta.get("task") not in (None, task.name):
        diffs.append(f"task {meta.get('task')!r} vs {task.name!r}")
    saved_vocab = meta.get("vocab")
    if saved_vocab not in (None, vocab):
        short = max(len(saved_vocab), len(vocab)) <= 32  # a text corpus's alphabet is too long to print
        diffs.append(f"vocabulary {saved_vocab!r} vs {vocab!r}" if short
                     else f"vocabulary ({len(saved_vocab)} vs {len(vocab)} characters)")
    saved_model = meta.get("model")
    if isinstance(saved_model, dict):
        for k, v in to_jsonable(model_cfg).items():
            if k in saved_model and to_jsonable(saved_model[k]) != v:
                diffs.append(f"model.{k} {saved_model[k]} vs {v}")
    if diffs:
        raise UserError(f"{where} does not match this run's config: {', '.join(diffs)}")


def new_run_dir(task: str) -> Path:
    """runs/TASK-TIMESTAMP, with -2, -3, ... when runs started in the same second."""
    base = Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while os.path.lexists(path):
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path

