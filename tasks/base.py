"""The task contract: what every task has (BaseTask), and what a task that makes problems adds (Task).

Every task makes training batches and answers for itself the questions the workbench asks of
it: how am I scored (`metric`), does this block size fit me (`check_block_size`), what do my
examples look like (`examples`).  It knows nothing about models or training.

A problem task (metric "accuracy": exact match of parsed answers on held-out problems) is the
one you write (docs/adding-a-task.md): it subclasses `Task` and defines

    name, description   class attributes
    Config              a frozen dataclass, a TaskConfig, that validates itself (ValueError)
    chars               the task's alphabet (END is added for you)
    sample(rng, n, split) -> Problems     columnar problems for a split
    key_columns         columns that identify a problem (for held-out hashing)
    render(problems) -> Rendered          prompt + target characters (see encode.py)
    solve(problems) -> list               reference answers, computed independently
    parse_answer(text) -> answer or None  completion text -> answer

Everything else (held-out splits, training pools, batches, scoring) is built on those.

A task scored by its loss alone (metric "loss": next-token loss, no problems, no answers)
subclasses `BaseTask` and defines make_vocab, batch, check_block_size and examples
(tasks/text.py).  It carries none of the problem machinery.  (Before BaseTask, such a task
subclassed Task and declared metric = "loss"; a file written so still loads and is checked as
a loss task: see `makes_problems`.)

Determinism: a batch is a pure function of (seed, split, step, micro), drawn
with np.random.default_rng([seed, split_id, step, micro]).  SeedSequence
hashes the whole tuple, so (seed s, step i+1) and (seed s+1, step i) share
nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tasks.encode import END, Rendered, Vocab, to_xy
from tasks.positions import ABACUS, DIGITS, PositionIds, Scheme, check_max_pos, count_on, shift

SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "ood": 3}
# How the built-in checkers (tasks/expr.py, the multiplication scratchpad) word a mistake:
# "step 2 '805' is not one correct reduction of ...", "trace stops at '84+063' before the answer".
STEP_MESSAGE = re.compile(r"step (\d+)\b")
UNFINISHED_MESSAGE = re.compile(r"trace stops at\b")
# What Task.first_error calls a mistake, whatever the task; tasks/expr.py's checker names more (EXPR_FAULTS)
FAULTS = {
    "answer": "the answer is wrong (a task without a trace; a trace's last step: the last operation's result)",
    "step": "a step of the trace is wrong (a checker that says only which one)",
    "malformed": "the completion, or one of its steps, does not parse",
    "unfinished": "every step is right, but the trace stops before its answer",
}
HOLDOUT_SALT = 0x5EED_CAFE_F00D
EVAL_CHUNK = 10_000  # problems an evaluation set is made and scored in at a time
POOL_STEP = 1 << 45  # the step id a finite training pool is drawn at; no batch uses it
EVAL_CHUNK = 10_000  # eval_problems' chunk: part of what (seed, split, n) gives, so fixed
METRICS = ("accuracy", "loss")  # how a task is scored: exact-match answers, or next-token loss only


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
        if len(parts) == 1:  # a batch's usual case: nothing to pad or copy
            return parts[0]
        keys = parts[0].columns.keys()
        return Problems(**{k: _concat([p[k] for p in parts]) for k in keys})


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    if arrays[0].ndim == 2:  # digit matrices may have different widths
        w = max(a.shape[1] for a in arrays)
        arrays = [np.pad(a, ((0, 0), (0, w - a.shape[1]))) for a in arrays]
    return np.concatenate(arrays)


@dataclass(frozen=True)
class TaskConfig:
    """Base for task configs.  Subclasses add fields and check them in __post_init__.

    The options below are ones every task has a value for, so the workbench reads them
    without asking whether a task has them.  They are plain class attributes, not fields:
    a task that does not declare them has no such option (`--set task.train_size=...`
    is an unknown key there), and the field order of subclasses is unchanged.  A task
    makes one settable by declaring it as a field (AdditionConfig declares both)."""

    mask_prompt = True  # the loss covers the target only, not the prompt
    train_size = 0  # > 0: train on a fixed pool of this many distinct problems; 0: fresh ones every batch

    # An option's old name -> its new one.  The old name stays a field, default None, because run
    # records written before the rename (config.json) hold it, and `--set task.OLD=...` may too;
    # __post_init__ calls adopt_renamed first, which moves its value to the new name.
    renamed: ClassVar[dict[str, str]] = {}

    def replace(self, **changes: Any) -> "TaskConfig":
        return dataclasses.replace(self, **changes)

    def adopt_renamed(self) -> None:
        """Move each renamed option given by its old name to its new one, and clear the old
        (ValueError when both are given, differently)."""
        for old, new in self.renamed.items():
            value = getattr(self, old)
            if value is None:
                continue
            if getattr(self, new) not in (value, self.__dataclass_fields__[new].default):
                raise ValueError(f"{old} is the old name of {new}; give only {new}")
            object.__setattr__(self, new, value)  # frozen: __post_init__ is where a config settles itself
            object.__setattr__(self, old, None)


def parse_odds(name: str, text: str, n: int, what: str) -> np.ndarray | None:
    """An option of comma-separated relative odds ("1,1,3") -> probabilities; None for "" (uniform).
    ValueError unless there are n non-negative numbers, not all zero."""
    if not text:
        return None
    try:
        w = np.array([float(x) for x in text.split(",")])
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if len(w) != n or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{name} needs {n} non-negative numbers ({what}), not all zero; got {text!r}")
    return w / w.sum()


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
    membership does not change when a config widens the matrices.  An object
    column holds Python ints, which may pass 64 bits; one that fits hashes as
    an int64 column would.
    """
    n = len(columns[0])
    h = np.full(n, np.uint64(salt), dtype=np.uint64)
    for col in columns:
        col = np.asarray(col)
        if col.dtype == object:
            h = mix64(h ^ _hash_big(col))
            continue
        col = col.astype(np.int64)
        if col.ndim == 1:
            v = mix64(col.view(np.uint64) ^ np.uint64(0x9E3779B97F4A7C15))
        else:
            pos = np.arange(col.shape[1], dtype=np.int64)[None, :] * 64
            terms = np.where(col != 0, mix64((pos + col + 1).view(np.uint64)), np.uint64(0))
            with np.errstate(over="ignore"):
                v = terms.sum(axis=1, dtype=np.uint64)
        h = mix64(h ^ v)
    return h


def _hash_big(col: np.ndarray) -> np.ndarray:
    """Python ints -> uint64: the int64 hash of the low 64 bits, each higher 64-bit limb folded in."""
    mask = (1 << 64) - 1
    ints = [int(x) for x in col]
    h = mix64(np.array([x & mask for x in ints], dtype=np.uint64) ^ np.uint64(0x9E3779B97F4A7C15))
    rest = [x >> 64 for x in ints]
    while any(rest):
        limb = np.array([r & mask for r in rest], dtype=np.uint64)
        h = np.where(limb != 0, mix64(h ^ mix64(limb)), h)
        rest = [r >> 64 for r in rest]
    return h


@dataclass(frozen=True)
class Fault:
    """The first thing wrong with a completion (Task.first_error), or any one thing a trace
    checker finds: the step it is in, counted from 1 (a bare answer is step 1, a trace's answer
    its last step, and a trace that stops early is wrong at the step it leaves out; None where the
    checker names no step), its kind (FAULTS, or tasks/expr.py's EXPR_FAULTS) and the checker's words."""

    step: int | None
    kind: str
    message: str = ""


def fault_of_message(message: str) -> Fault:
    """A checker's line (Task.trace_errors) as a Fault, by the words the built-in checkers use."""
    if m := STEP_MESSAGE.match(message):
        return Fault(int(m.group(1)), "step", message)
    return Fault(None, "unfinished" if UNFINISHED_MESSAGE.match(message) else "malformed", message)


@dataclass(frozen=True)
class Example:
    """One row of `workbench show`: what the model reads and what it is trained to predict.

    xs[t] is the input character at position t and ys[t] the target there (None where
    the loss is masked).  prompt, target, answer and meta (bucket -> value) describe the
    problem the row renders; a text task has no problems, so they are None and empty."""

    xs: list[str]
    ys: list[str | None]
    prompt: str | None = None
    target: str | None = None
    answer: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


class BaseTask:
    """What every task has: a name, options, a vocabulary, splits, a metric, and batches.

    A subclass that makes no problems (a text corpus) defines make_vocab, batch,
    check_block_size and examples; a problem task subclasses Task, which defines them."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    metric: ClassVar[str] = "loss"  # one of METRICS; a Task's is "accuracy"
    # eval tables' group-by columns: the workbench lists them for every task, and a task without
    # problems has none
    buckets: ClassVar[tuple[str, ...]] = ()
    default_by: ClassVar[tuple[str, ...]] = ()  # buckets `workbench eval` groups by unless --by says

    def __init__(self, config: TaskConfig | None = None):
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}")
        self.vocab = self.make_vocab()

    # ---- what a task without problems implements (check_contract insists) ---------------------
    # Not abstract: check_contract names what is missing, before anything is constructed.
    def make_vocab(self) -> Vocab:
        """The task's vocabulary, built once at construction."""
        raise NotImplementedError(f"task {self.name!r} does not implement make_vocab")

    def batch(self, seed: int, split: str, step: int, micro: int, batch_size: int,
              block_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Training arrays (x, y), each (batch_size, block_size), for one micro-batch; a pure
        function of its arguments."""
        raise NotImplementedError(f"task {self.name!r} does not implement batch")

    def check_block_size(self, block_size: int) -> None:
        """ValueError unless a model with this block size can train on the task's train split."""
        raise NotImplementedError(f"task {self.name!r} does not implement check_block_size")

    def examples(self, seed: int, split: str, n: int) -> list[Example]:
        """n rows of a split as the model sees them (`workbench show`), a pure function of seed."""
        raise NotImplementedError(f"task {self.name!r} does not implement examples")

    # ---- what every task answers --------------------------------------------------------------
    @property
    def end_id(self) -> int | None:
        """The token that closes every answer, where decoding stops; None for a task without
        answers (a text corpus, in which END may be an ordinary character)."""
        return None

    @property
    def train_size(self) -> int:
        """Size of the fixed training pool; 0 (the default) means fresh problems every batch.

        A task opts in by giving its Config a `train_size` field (see TaskConfig); a task
        without problems has no pool, and its config keeps TaskConfig's 0."""
        return self.config.train_size

    def position_scheme(self, scheme: str) -> Scheme:
        """How this task numbers its tokens for model.pos=scheme (tasks/positions.py): a task
        without problems has no prompts and targets to number them in."""
        raise ValueError(f"task {self.name!r} is scored by its loss and has no problems whose tokens it "
                         f"could number: model.pos={scheme} needs a problem task")

    def check_split(self, split: str) -> None:
        """ValueError unless split is one of the task's splits."""
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; it has {', '.join(self.splits)}")

    def rng(self, seed: int, split: str, step: int, micro: int = 0) -> np.random.Generator:
        """The generator of one micro-batch: every draw of a batch comes from it."""
        return np.random.default_rng([seed, SPLIT_IDS[split], step, micro])


class Task(BaseTask):
    """A task that makes problems and answers them: the class a task file subclasses.

    The subclass defines chars, sample, render, solve, parse_answer and key_columns
    (check_contract insists); held-out splits, training pools, batches, examples and scoring
    come from here."""

    metric: ClassVar[str] = "accuracy"
    key_columns: ClassVar[tuple[str, ...]] = ()
    test_fraction: ClassVar[float] = 0.05  # share of problems (per bucket, by hash) held out
    finite_train: ClassVar[bool] = False  # training draws from a small fixed pool: track train_acc too
    # check_answer adds a trace_valid column; every config has it, so runs of one task compare
    scores_traces: ClassVar[bool] = False
    # what `workbench eval --by` also groups by: each scored completion's first wrong step and its
    # kind (first_error; "none" for a right answer with a valid trace)
    fault_buckets: ClassVar[tuple[str, ...]] = ("first_step", "first_error")

    def __init__(self, config: TaskConfig | None = None):
        super().__init__(config)
        # train_pool's, by seed: a pool is drawn once (seconds, for a large train_size), and every
        # training batch of the run takes its problems from it
        self._pools: dict[int, Problems] = {}

    def make_vocab(self) -> Vocab:
        """The task's alphabet and END, which closes every target."""
        return Vocab(self.chars + END)

    @property
    def end_id(self) -> int:
        return self.vocab.stoi[END]

    # ---- what a problem task implements (check_contract insists) ------------------------------
    @property
    def chars(self) -> str:
        raise NotImplementedError(f"task {self.name!r} does not implement chars")

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        """n problems from the split's distribution (held-out filtering is done for you)."""
        raise NotImplementedError(f"task {self.name!r} does not implement sample")

    def render(self, problems: Problems) -> Rendered:
        raise NotImplementedError(f"task {self.name!r} does not implement render")

    def solve(self, problems: Problems) -> list:
        """Reference answers, computed independently of render()."""
        raise NotImplementedError(f"task {self.name!r} does not implement solve")

    def parse_answer(self, text: str) -> Any:
        """A completion (END stripped) -> the answer, or None when it does not parse."""
        raise NotImplementedError(f"task {self.name!r} does not implement parse_answer")

    # ---- optional hooks ----------------------------------------------------------------------
    @property
    def mask_prompt(self) -> bool:
        return self.config.mask_prompt

    def check_block_size(self, block_size: int) -> None:
        """ValueError unless a model with this block size holds the train split's longest problem."""
        need = self.max_length() - 1  # x drops the last character
        if need > block_size:
            raise ValueError(f"model.block_size {block_size} is too small for task {self.name!r}: "
                             f"its longest problem needs {need}; pass --set model.block_size={need}")

    def max_length(self, splits: Sequence[str] = ("train",)) -> int:
        """Longest rendered sequence (prompt + target + END) seen in 512 samples of the splits.

        Tasks whose longest case is rare should override this with the exact bound."""
        rng = np.random.default_rng(0)
        return int(max(self.render(self.sample(rng, 512, s)).length.max() for s in splits))

    def check_answer(self, completion: str, expected: Any, prompt: str = "") -> dict[str, Any]:
        """Score one completion: {"correct": ...}, and trace_valid when the task scores traces.

        trace_valid: trace_errors finds nothing.  Where there is no trace to check (this
        config writes none, or no prompt to start it from) the answer is the whole trace,
        so trace_valid is correct."""
        correct = self.parse_answer(completion) == expected
        if not self.scores_traces:
            return {"correct": correct}
        valid = not self.trace_errors(prompt, completion) if self.has_trace and prompt else correct
        return {"correct": correct, "trace_valid": valid}

    @property
    def has_trace(self) -> bool:
        """Whether completions carry a chain of thought that trace_errors checks step by step."""
        return False

    def trace_errors(self, prompt: str, completion: str) -> list[str]:
        """What is wrong with a completion's chain of thought, step by step ([] = nothing).

        Tasks without traces have none to check."""
        return []

    def trace_faults(self, prompt: str, completion: str) -> list[Fault]:
        """trace_errors' findings as Faults, in order, read from their words (fault_of_message); a
        task whose checker knows each mistake's kind returns its own (the calculator)."""
        return [fault_of_message(e) for e in self.trace_errors(prompt, completion)]

    def first_error(self, prompt: str, completion: str, expected: Any) -> Fault | None:
        """The first thing wrong with a completion, None when its answer is right and its trace
        valid (check_answer's correct and trace_valid): the first fault of its trace, else a wrong
        answer (step 1 when there is no trace; a valid trace's last step is unknown here)."""
        faults = self.trace_faults(prompt, completion) if self.has_trace and prompt else []
        if faults:
            return faults[0]
        if self.parse_answer(completion) == expected:
            return None
        return Fault(None if self.has_trace and prompt else 1, "answer", "the answer is wrong")

    def problems_from_prompts(self, prompts: Sequence[str]) -> Problems:
        """Problems from user-typed prompts (for `workbench ask`); ValueError when one is malformed."""
        raise NotImplementedError(f"task {self.name!r} cannot read problems from prompts")

    def examples(self, seed: int, split: str, n: int) -> list[Example]:
        """n problems of a split as the model sees them (`workbench show`), a pure function of seed."""
        self.check_split(split)
        problems = self.problems(np.random.default_rng(seed), n, split)
        r = self.render(problems)
        x, y = to_xy(r, self.vocab, self.mask_prompt)
        answers = self.solve(problems)
        chars = self.vocab.chars
        out = []
        for i in range(len(r)):
            length = int(r.length[i]) - 1  # x drops END, y the first character
            out.append(Example(
                xs=[chars[t] for t in x[i, :length]],
                ys=[chars[t] if t >= 0 else None for t in y[i, :length]],
                prompt=r.prompt(i), target=r.target(i), answer=answers[i],
                meta={b: _plain(problems[b][i]) for b in self.buckets},
            ))
        return out

    # ---- levels of difficulty (train.curriculum=auto; tasks/curriculum.py) --------------------
    def levels(self) -> list[dict[str, Any]]:
        """Option overrides from easiest to the task as configured (the last is {}), for a
        curriculum; [] for a task without levels.  A level changes what problems are drawn,
        never how they are written: every level's problems are rendered by this task."""
        return []

    # ---- position ids that come with the data (model.pos=abacus|coupled; tasks/positions.py) ----
    def position_scheme(self, scheme: str) -> Scheme:
        """How this task numbers its tokens for model.pos=scheme.  Abacus is generic (digits by
        their index within their number); a task defines "coupled" from its own format."""
        has_digits = any(c in DIGITS for c in self.vocab.chars)
        if scheme == "abacus" and has_digits:
            return ABACUS
        have = "abacus" if has_digits else "neither"
        raise ValueError(f"task {self.name!r} has no {scheme} position ids (model.pos={scheme}); it has {have}")

    def position_ids(self, r: Rendered, scheme: str) -> np.ndarray:
        """(N, W) position ids of r's characters (0: none); the target's by the counting rule."""
        s = self.position_scheme(scheme)
        return count_on(s.prompt_ids(r), r, s.counting, s.step, s.restart)

    # ---- held-out splits ---------------------------------------------------------------------
    def is_test(self, problems: Problems) -> np.ndarray:
        """Membership of the held-out test set, by a salted hash of the problem's key."""
        if not self.key_columns:
            raise NotImplementedError(f"task {self.name!r} declares no key_columns")
        h = hash_rows([problems[c] for c in self.key_columns], HOLDOUT_SALT)
        return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < self.test_fraction

    def problems(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        """n problems of a split.  train never contains a test problem: rejected ones are resampled."""
        if split != "val":  # every task has a validation split: test problems, drawn apart
            self.check_split(split)
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
    def train_pool(self, seed: int) -> Problems:
        """train_size distinct training problems, a pure function of the run's seed (kept in
        self._pools: drawn once per seed)."""
        if seed not in self._pools:
            self._pools[seed] = self.draw_pool(seed)
        return self._pools[seed]

    def draw_pool(self, seed: int) -> Problems:
        """train_size distinct training problems drawn afresh; ValueError when the train split
        has fewer."""
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
                return Problems.concat(parts)
        raise ValueError(f"task {self.name!r} has fewer than train_size={self.train_size} "
                         f"distinct training problems (found {have})")

    # ---- batches ------------------------------------------------------------------------------
    def batch(self, seed: int, split: str, step: int, micro: int, batch_size: int,
              block_size: int, ids: PositionIds | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Training arrays (x, y) for one micro-batch; a pure function of its arguments.

        With ids, x is (N, T, 2): each token and its position id; in the train split every
        row's ids are shifted by a random offset, so that all ids up to ids.max_pos get trained."""
        rng = self.rng(seed, split, step, micro)
        if split == "train" and self.train_size:
            pool = self.train_pool(seed)
            probs = pool.take(rng.integers(0, len(pool), size=batch_size))
        else:
            probs = self.problems(rng, batch_size, split)
        return self.encode_batch(probs, rng, split, block_size, ids)

    def encode_batch(self, probs: Problems, rng: np.random.Generator, split: str, block_size: int,
                     ids: PositionIds | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Problems -> (x, y) as `batch` makes them: rendered by this task, masked, with position
        ids (shifted with rng in the train split), cut to the block."""
        r = self.render(probs)
        x, y = to_xy(r, self.vocab, self.mask_prompt)
        if ids is not None:
            p = self.position_ids(r, ids.scheme)[:, : x.shape[1]]
            if split == "train":
                p = shift(p, ids.max_pos, rng)
            else:
                check_max_pos(int(p.max(initial=0)), ids.max_pos, f"a {split} problem")
            x = np.stack([x, p], axis=-1)
        # a rare problem longer than the block (max_length is an estimate for some tasks)
        # loses its tail rather than stopping the run
        return x[:, :block_size], y[:, :block_size]

    def eval_problems(self, seed: int, split: str, n: int, chunk: int = EVAL_CHUNK) -> Iterator[Problems]:
        """A fixed, reproducible evaluation set, streamed in chunks (constant memory)."""
        for start in range(0, n, chunk):
            yield self.eval_chunk(seed, split, n, start, chunk)

    def eval_chunk(self, seed: int, split: str, n: int, start: int, chunk: int = EVAL_CHUNK) -> Problems:
        """The chunk of eval_problems(seed, split, n, chunk) that begins with its problem `start`
        (a multiple of chunk), drawn on its own: a reader of one problem (tasks/reasoning_gym.py)
        need not draw the chunks before it."""
        rng = np.random.default_rng([seed, SPLIT_IDS[split], 1 << 50, start])
        return self.problems(rng, min(chunk, n - start), split)


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value it holds (a bucket value in an Example)."""
    return v.item() if isinstance(v, np.generic) else v


# What a task class defines itself, and the arguments the workbench passes each method (None: an
# attribute or property, not called).  A problem task's are its problems; a loss task's, its batches.
PROBLEM_CONTRACT: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("chars", None), ("sample", ("rng", "n", "split")), ("render", ("problems",)), ("solve", ("problems",)),
    ("parse_answer", ("text",)))
LOSS_CONTRACT: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("make_vocab", ()), ("batch", ("seed", "split", "step", "micro", "batch_size", "block_size")),
    ("check_block_size", ("block_size",)), ("examples", ("seed", "split", "n")))


def makes_problems(cls: type[BaseTask]) -> bool:
    """Whether a task class makes problems, and is checked as a problem task: a Task, unless it
    declares metric "loss".  A task scored by its loss that was written before BaseTask subclassed
    Task so, and defines batch, check_block_size and examples itself; its file still loads."""
    return issubclass(cls, Task) and cls.metric == "accuracy"


def check_contract(cls: type) -> None:
    """The class has what the workbench calls, with the right signatures (TypeError if not)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseTask)):
        raise TypeError(f"{cls!r} is not a subclass of tasks.base.Task (or of BaseTask, for a task scored by its loss)")
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no `name`")
    if cls.metric not in METRICS:
        raise TypeError(f"{cls.__name__}.metric is {cls.metric!r}; it must be one of {', '.join(METRICS)}")
    if cls.metric == "accuracy" and not issubclass(cls, Task):
        raise TypeError(f"{cls.__name__} is scored by accuracy, but only a Task makes problems to score: "
                        "subclass tasks.base.Task")
    problems = makes_problems(cls)
    _check_members(cls, Task if problems else BaseTask, PROBLEM_CONTRACT if problems else LOSS_CONTRACT)
    if not dataclasses.is_dataclass(cls.Config) or not cls.Config.__dataclass_params__.frozen:
        raise TypeError(f"{cls.__name__}.Config must be a frozen dataclass")
    if not issubclass(cls.Config, TaskConfig):  # TaskConfig declares the options every task has
        raise TypeError(f"{cls.__name__}.Config must subclass tasks.base.TaskConfig")
    if problems and not cls.key_columns:
        raise TypeError(f"{cls.__name__} declares no key_columns (they decide the held-out test set)")


def _check_members(cls: type, base: type, contract: Sequence[tuple[str, tuple[str, ...] | None]]) -> None:
    """cls defines each member of the contract that base leaves to it, callable with the contract's arguments."""
    missing = [m for m, _ in contract if getattr(cls, m) is getattr(base, m)]
    if missing:
        raise TypeError(f"{cls.__name__} does not implement {', '.join(missing)}")
    for meth, params in contract:
        if params is None:
            continue
        sig = inspect.signature(getattr(cls, meth))
        try:
            sig.bind(None, *params)  # None: self
        except TypeError:
            got = list(sig.parameters)[1:]
            raise TypeError(f"{cls.__name__}.{meth} takes ({', '.join(got)}); the contract is "
                            f"{meth}(self, {', '.join(params)})") from None
