"""The task contract.

A task makes problems, renders them to characters, and scores answers.  It
knows nothing about models or training.  To write one, subclass `Task`:

    name, description   class attributes
    Config              a frozen dataclass that validates itself (ValueError)
    chars               the task's alphabet (END is added for you)
    sample(rng, n, split) -> Problems     columnar problems for a split
    key_columns         columns that identify a problem (for held-out hashing)
    render(problems) -> Rendered          prompt + target characters (see encode.py)
    solve(problems) -> list               reference answers, computed independently
    parse_answer(text) -> answer or None  completion text -> answer

Everything else (held-out splits, batches, scoring) is built on those.

Determinism: a batch is a pure function of (seed, split, step, micro), drawn
with np.random.default_rng([seed, split_id, step, micro]).  SeedSequence
hashes the whole tuple, so (seed s, step i+1) and (seed s+1, step i) share
nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tasks.encode import END, Rendered, Vocab, to_xy

SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "ood": 3}
HOLDOUT_SALT = 0x5EED_CAFE_F00D
POOL_STEP = 1 << 45  # the step id a finite training pool is drawn at; no batch uses it


class Problems:
    """Columns of equal length: numpy arrays, one row per problem."""

    def __init__(self, **columns: np.ndarray):
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: { {k: len(v) for k, v in columns.items()} }")
        self.columns = {k: np.asarray(v) for k, v in columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def take(self, index: np.ndarray) -> "Problems":
        return Problems(**{k: v[index] for k, v in self.columns.items()})

    @staticmethod
    def concat(parts: Sequence["Problems"]) -> "Problems":
        keys = parts[0].columns.keys()
        return Problems(**{k: _concat([p[k] for p in parts]) for k in keys})


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    if arrays[0].ndim == 2:  # digit matrices may have different widths
        w = max(a.shape[1] for a in arrays)
        arrays = [np.pad(a, ((0, 0), (0, w - a.shape[1]))) for a in arrays]
    return np.concatenate(arrays)


@dataclass(frozen=True)
class TaskConfig:
    """Base for task configs.  Subclasses add fields and check them in __post_init__."""

    def replace(self, **changes: Any) -> "TaskConfig":
        return dataclasses.replace(self, **changes)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-spread 64-bit hash, vectorised."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_rows(columns: Sequence[np.ndarray], salt: int) -> np.ndarray:
    """One uint64 per row from integer columns.

    A 2-D column is a little-endian digit matrix; it hashes the same whatever
    its width (trailing zero digits do not count), so a problem's held-out
    membership does not change when a config widens the matrices.
    """
    n = len(columns[0])
    h = np.full(n, np.uint64(salt), dtype=np.uint64)
    for col in columns:
        col = np.asarray(col).astype(np.int64)
        if col.ndim == 1:
            v = mix64(col.view(np.uint64) ^ np.uint64(0x9E3779B97F4A7C15))
        else:
            pos = np.arange(col.shape[1], dtype=np.int64)[None, :] * 64
            terms = np.where(col != 0, mix64((pos + col + 1).view(np.uint64)), np.uint64(0))
            with np.errstate(over="ignore"):
                v = terms.sum(axis=1, dtype=np.uint64)
        h = mix64(h ^ v)
    return h


class Task(ABC):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    buckets: ClassVar[tuple[str, ...]] = ()  # metadata columns for accuracy tables
    default_by: ClassVar[tuple[str, ...]] = ()  # buckets `workbench eval` groups by unless --by says
    key_columns: ClassVar[tuple[str, ...]] = ()
    test_fraction: ClassVar[float] = 0.05  # share of problems (per bucket, by hash) held out
    kind: ClassVar[str] = "problems"  # "problems" (exact-match eval) or "text" (loss only)
    finite_train: ClassVar[bool] = False  # training draws from a small fixed pool: track train_acc too

    def __init__(self, config: TaskConfig | None = None):
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}")
        self.vocab = Vocab(self.chars + END)

    # ---- what a task implements ------------------------------------------------------------
    @property
    @abstractmethod
    def chars(self) -> str: ...

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        """n problems from the split's distribution (held-out filtering is done for you)."""

    @abstractmethod
    def render(self, problems: Problems) -> Rendered: ...

    @abstractmethod
    def solve(self, problems: Problems) -> list:
        """Reference answers, computed independently of render()."""

    @abstractmethod
    def parse_answer(self, text: str) -> Any:
        """A completion (END stripped) -> the answer, or None when it does not parse."""

    @property
    def mask_prompt(self) -> bool:
        return bool(getattr(self.config, "mask_prompt", True))

    def max_length(self, splits: Sequence[str] = ("train",)) -> int:
        """Longest rendered sequence (prompt + target + END) seen in 512 samples of the splits.

        Tasks whose longest case is rare should override this with the exact bound."""
        rng = np.random.default_rng(0)
        return int(max(self.render(self.sample(rng, 512, s)).length.max() for s in splits))

    def check_answer(self, completion: str, expected: Any, prompt: str = "") -> dict[str, Any]:
        """Score one completion; tasks with traces add e.g. trace_valid (they may use the prompt)."""
        return {"correct": self.parse_answer(completion) == expected}

    def trace_errors(self, prompt: str, completion: str) -> list[str]:
        """What is wrong with a completion's chain of thought, step by step ([] = nothing).

        Tasks without traces have none to check."""
        return []

    def problems_from_prompts(self, prompts: Sequence[str]) -> Problems:
        """Problems from user-typed prompts (for `workbench ask`); ValueError when one is malformed."""
        raise NotImplementedError(f"task {self.name!r} cannot read problems from prompts")

    # ---- held-out splits ---------------------------------------------------------------------
    def is_test(self, problems: Problems) -> np.ndarray:
        """Membership of the held-out test set, by a salted hash of the problem's key."""
        if not self.key_columns:
            raise NotImplementedError(f"task {self.name!r} declares no key_columns")
        h = hash_rows([problems[c] for c in self.key_columns], HOLDOUT_SALT)
        return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < self.test_fraction

    def problems(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        """n problems of a split.  train never contains a test problem: rejected ones are resampled."""
        if split not in self.splits and split != "val":
            raise ValueError(f"task {self.name!r} has no split {split!r}; it has {', '.join(self.splits)}")
        if split == "ood":
            return self.sample(rng, n, "ood")
        want_test = split in ("test", "val")
        parts, have = [], 0
        share = self.test_fraction if want_test else 1 - self.test_fraction
        for _ in range(1000):
            m = max(16, int((n - have) / max(share, 1e-3) * 1.2) + 16)
            cand = self.sample(rng, m, "test" if want_test else "train")
            keep = self.is_test(cand) == want_test
            got = cand.take(np.flatnonzero(keep)[: n - have])
            parts.append(got)
            have += len(got)
            if have >= n:
                return Problems.concat(parts)
        raise RuntimeError(f"task {self.name!r}: could not draw {n} {split} problems (is the split empty?)")

    # ---- a finite training set (config.train_size > 0) -------------------------------------
    @property
    def train_size(self) -> int:
        """Size of the fixed training pool; 0 (the default) means fresh problems every batch.

        A task opts in by giving its Config a `train_size` field."""
        return int(getattr(self.config, "train_size", 0) or 0)

    def train_pool(self, seed: int) -> Problems:
        """train_size distinct training problems, a pure function of the run's seed."""
        pools = self.__dict__.setdefault("_pools", {})
        if seed not in pools:
            rng = np.random.default_rng([seed, SPLIT_IDS["train"], POOL_STEP])
            parts, seen, have = [], set(), 0
            for _ in range(100):
                cand = self.problems(rng, 2 * (self.train_size - have) + 16, "train")
                keys = hash_rows([cand[c] for c in self.key_columns], 0).tolist()
                fresh = [i for i, k in enumerate(keys) if not (k in seen or seen.add(k))]
                got = cand.take(np.array(fresh[: self.train_size - have], dtype=np.int64))
                parts.append(got)
                have += len(got)
                if have >= self.train_size:
                    break
            else:
                raise ValueError(f"task {self.name!r} has fewer than train_size={self.train_size} "
                                 f"distinct training problems (found {have})")
            pools[seed] = Problems.concat(parts)
        return pools[seed]

    # ---- batches ------------------------------------------------------------------------------
    def rng(self, seed: int, split: str, step: int, micro: int = 0) -> np.random.Generator:
        return np.random.default_rng([seed, SPLIT_IDS[split], step, micro])

    def batch(self, seed: int, split: str, step: int, micro: int, batch_size: int,
              block_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Training arrays (x, y) for one micro-batch; a pure function of its arguments."""
        rng = self.rng(seed, split, step, micro)
        if split == "train" and self.train_size:
            pool = self.train_pool(seed)
            probs = pool.take(rng.integers(0, len(pool), size=batch_size))
        else:
            probs = self.problems(rng, batch_size, split)
        x, y = to_xy(self.render(probs), self.vocab, self.mask_prompt)
        # a rare problem longer than the block (max_length is an estimate for some tasks)
        # loses its tail rather than stopping the run
        return x[:, :block_size], y[:, :block_size]

    def eval_problems(self, seed: int, split: str, n: int, chunk: int = 10_000) -> Iterator[Problems]:
        """A fixed, reproducible evaluation set, streamed in chunks (constant memory)."""
        for start in range(0, n, chunk):
            rng = np.random.default_rng([seed, SPLIT_IDS[split], 1 << 50, start])
            yield self.problems(rng, min(chunk, n - start), split)


REQUIRED = ("chars", "sample", "render", "solve", "parse_answer")


def check_contract(cls: type) -> None:
    """The class has what the workbench calls, with the right signatures (TypeError if not)."""
    if isinstance(cls, type) and getattr(cls, "kind", "") == "text":  # language modelling: batches only
        for attr in ("name", "Config", "batch"):
            if not getattr(cls, attr, None):
                raise TypeError(f"{cls.__name__} (a text task) has no `{attr}`")
        return
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"{cls!r} is not a subclass of tasks.base.Task")
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no `name`")
    missing = [m for m in REQUIRED if m in getattr(cls, "__abstractmethods__", ())]
    if missing:
        raise TypeError(f"{cls.__name__} does not implement {', '.join(missing)}")
    for meth, params in (("sample", ["rng", "n", "split"]), ("render", ["problems"]), ("solve", ["problems"]),
                         ("parse_answer", ["text"])):
        got = list(inspect.signature(getattr(cls, meth)).parameters)[1:]
        if len(got) != len(params):
            raise TypeError(f"{cls.__name__}.{meth} takes ({', '.join(got)}); the contract is "
                            f"{meth}(self, {', '.join(params)})")
    if not dataclasses.is_dataclass(cls.Config) or not cls.Config.__dataclass_params__.frozen:
        raise TypeError(f"{cls.__name__}.Config must be a frozen dataclass")
    if cls.kind == "problems" and not cls.key_columns:
        raise TypeError(f"{cls.__name__} declares no key_columns (they decide the held-out test set)")
