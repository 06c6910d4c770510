"""A conformance kit for task classes: `check_task(MyTask)` runs property-based checks.

Use it in a test:

    from tasks.testing import check_task
    def test_my_task():
        check_task(MyTask)                       # default config
        check_task(MyTask, MyTask.Config(n=7))   # another one

It raises TaskCheckFailed naming every failed check.  `run_checks` returns the
results instead (what `workbench check` prints).  Seeds, steps and batch sizes
are drawn by hypothesis; a failure reports the smallest example it found.

The checks run in two stages.  The class first: its contract (tasks/base.py), the
new-task template's placeholders, its config's validation; then it is constructed.
Then the task itself, through CHECKS: each entry names a module-level function
`check_*(subject)` that raises when the task fails it, and says which tasks it
applies to (a task scored by its loss has no problems to round-trip).  To add a
check, write the function, with a docstring saying what it checks and why, and
list it in CHECKS.
"""

from __future__ import annotations

import dataclasses
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.base import BaseTask, Problems, Task, check_contract, makes_problems
from tasks.curriculum import Curriculum
from tasks.encode import END, IGNORE, to_xy
from tasks.positions import SCHEMES, PositionIds

LOSS_BLOCK = 32  # window length the batch checks use for a loss task (it has no longest problem)
PLACEHOLDER = "TODO(new-task)"  # what `workbench new-task` marks in the example it writes

SEEDS = st.integers(0, 2**31 - 1)
STEPS = st.integers(0, 10**6)
SIZES = st.integers(1, 48)


class TaskCheckFailed(AssertionError):
    pass


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Subject:
    """A constructed task, and what the checks derive from it once."""

    task: BaseTask
    examples: int  # hypothesis examples per check (fewer for the checks that compare many rows)
    problems: bool  # the task makes problems (tasks.base.makes_problems): it has answers to check
    splits: tuple[str, ...]  # the splits the checks draw from
    longest: dict[str, int]  # a problem task's max_length per split: the block that holds a batch whole
    schemes: tuple[str, ...]  # the position-id schemes the task has (model.pos=...)

    @classmethod
    def of(cls, task: BaseTask, examples: int) -> "Subject":
        """What the checks need of a task, worked out once (max_length samples 512 problems a split)."""
        if not makes_problems(type(task)):
            return cls(task, examples, False, tuple(task.splits), {}, ())
        splits = tuple(s for s in task.splits if s in ("train", "test", "ood"))
        return cls(task, examples, True, splits, {s: task.max_length((s,)) for s in splits},
                   tuple(s for s in SCHEMES if _has_scheme(task, s)))

    def block(self, split: str) -> int:
        """The block size the checks batch a split with: a problem task's batch holds its
        longest problem whole; a loss task's windows are any size."""
        return self.longest[split] if self.problems else LOSS_BLOCK

    def any_split(self) -> st.SearchStrategy[str]:
        """Draws one of the splits the checks cover."""
        return st.sampled_from(self.splits)


def _has_scheme(task: Task, scheme: str) -> bool:
    try:
        task.position_scheme(scheme)
    except ValueError:  # the task does not number its tokens this way
        return False
    return True


def _for_all(n: int, **strategies: st.SearchStrategy) -> Callable[[Callable], Callable[[], None]]:
    """Decorates a property: calling it checks it on n examples drawn from strategies."""
    # explicit settings win over any hypothesis profile: derandomized, no database, so `workbench check` is reproducible
    at_n = settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                    derandomize=True)
    return lambda prop: at_n(given(**strategies)(prop))


def _few(s: Subject) -> int:
    # for checks whose every example compares dozens of rows: an ignored seed or a bad id fails on any of them
    return max(5, s.examples // 3)


# ---- checks on the class, before it is constructed ---------------------------------------------

def check_config_validation(cls: type) -> None:
    """Absurd values for numeric and string fields are refused with ValueError.

    A config that takes anything fails later and elsewhere: in the middle of a run, or
    silently, as problems other than the ones asked for."""
    base = cls.Config()
    for f in dataclasses.fields(base):
        v = getattr(base, f.name)
        if isinstance(v, bool) or f.name == "mask_prompt":
            continue
        bad = -(10**6) if isinstance(v, (int, float)) else "\x00bogus" if isinstance(v, str) else None
        if bad is None:
            continue
        try:
            dataclasses.replace(base, **{f.name: bad})
        except ValueError:
            continue
        raise AssertionError(f"{cls.__name__}.Config accepted {f.name}={bad!r}; validate it in __post_init__")


def placeholder_lines(cls: type) -> list[int]:
    """The lines of the class's file that still hold a `workbench new-task` placeholder."""
    try:
        lines = inspect.getsource(inspect.getmodule(cls)).splitlines()
    except (OSError, TypeError):  # no source to read (a class built at run time)
        return []
    return [i for i, line in enumerate(lines, 1) if PLACEHOLDER in line]


def check_no_placeholders(cls: type, lines: list[int]) -> None:
    """The new-task template's example has been replaced: it trains as it is, so nothing else
    would tell a finished task from the template it started as."""
    where = ", ".join(map(str, lines))
    raise AssertionError(f"{inspect.getsourcefile(cls)} is still the new-task template's example: replace what "
                         f"each {PLACEHOLDER} marks (line {where}) with your task, then delete the markers")


# ---- checks on the task: batches ---------------------------------------------------------------

def check_determinism(s: Subject) -> None:
    """The same (seed, split, step) gives the same batch: a resumed, distributed or prefetched
    run trains on exactly the data of one uninterrupted process."""
    @_for_all(s.examples, seed=SEEDS, step=STEPS, size=SIZES, split=s.any_split())
    def determinism(seed: int, step: int, size: int, split: str) -> None:
        a = s.task.batch(seed, split, step, 0, size, s.block(split))
        b = s.task.batch(seed, split, step, 0, size, s.block(split))
        assert all(np.array_equal(u, v) for u, v in zip(a, b)), "same (seed, split, step) gave different batches"

    determinism()


def check_seeds_differ(s: Subject) -> None:
    """Another seed or another step gives other data: a task that ignores them trains on one
    batch over and over, and its seeds are not independent runs."""
    @_for_all(_few(s), seed=SEEDS, step=STEPS)
    def seeds_differ(seed: int, step: int) -> None:
        a = s.task.batch(seed, "train", step, 0, 64, s.block("train"))
        b = s.task.batch(seed + 1, "train", step, 0, 64, s.block("train"))
        c = s.task.batch(seed, "train", step + 1, 0, 64, s.block("train"))
        for other, what in ((b, "seed+1"), (c, "step+1")):
            assert not all(np.array_equal(u, v) for u, v in zip(a, other)), f"{what} gave the same 64 rows"

    seeds_differ()


# ---- checks on the task: problems and answers ----------------------------------------------------

def check_disjoint(s: Subject) -> None:
    """No problem is both a training and a test (or ood) problem: test accuracy measures what the
    model computes, not what it memorised, and an ood split what it does past its training."""
    task = s.task
    rng = np.random.default_rng(12345)
    train, test = task.problems(rng, 3000, "train"), task.problems(rng, 600, "test")
    assert not task.is_test(train).any(), "a train problem is in the test set"
    assert task.is_test(test).all(), "a test problem is not in the test set"
    seen = _keys(task, train)
    shared = seen & _keys(task, test)
    assert not shared, f"train and test share {len(shared)} problems, e.g. {next(iter(shared))}"
    if "ood" in s.splits:  # drawn without the held-out hash: disjoint by construction, or not at all
        shared = seen & _keys(task, task.problems(rng, 600, "ood"))
        assert not shared, f"train and ood share {len(shared)} problems, e.g. {next(iter(shared))}"


def _keys(task: Task, p: Problems) -> set[tuple]:
    """Each problem's key_columns as a tuple of Python values (a digit matrix's row without its
    trailing zeros, as the held-out hash reads it)."""
    cols = [np.asarray(p[c]) for c in task.key_columns]
    rows = []
    for i in range(len(p)):
        parts = []
        for c in cols:
            v = c[i]
            parts.append(tuple(np.trim_zeros(np.asarray(v), "b").tolist()) if np.ndim(v) else v.item()
                         if hasattr(v, "item") else v)
        rows.append(tuple(parts))
    return set(rows)


def check_masks(s: Subject) -> None:
    """x is the rendered sequence and y its next characters, masked exactly over the prompt (when
    the task masks it) and the padding: the loss covers the target and END, nothing else."""
    task = s.task

    @_for_all(s.examples, seed=SEEDS, split=s.any_split())
    def masks(seed: int, split: str) -> None:
        r = task.render(task.problems(np.random.default_rng(seed), 16, split))
        x, y = to_xy(r, task.vocab, task.mask_prompt)
        for i in range(len(r)):
            P, L = int(r.prompt_len[i]), int(r.length[i])
            seq = task.vocab.encode(r.prompt(i) + r.target(i) + END)
            assert x[i, : L - 1].tolist() == seq[:-1], "x is not the rendered sequence"
            want = [seq[t + 1] if (P <= t + 1 or not task.mask_prompt) and t + 1 < L else IGNORE
                    for t in range(x.shape[1])]
            assert y[i].tolist() == want, f"targets do not line up with the mask in row {i}: {r.prompt(i)!r}"

    masks()


def check_round_trip(s: Subject) -> None:
    """parse_answer reads back, from each rendered target, the answer the solver computes on its
    own: otherwise a model that writes the targets perfectly is scored wrong."""
    task = s.task

    @_for_all(s.examples, seed=SEEDS, split=s.any_split())
    def round_trip(seed: int, split: str) -> None:
        p = task.problems(np.random.default_rng(seed), 32, split)
        r, answers = task.render(p), task.solve(p)
        assert len(answers) == len(p), "solve returned the wrong number of answers"
        for i in range(len(p)):
            got = task.parse_answer(r.target(i))
            assert got == answers[i], f"parse_answer(render) gave {got!r}, the solver {answers[i]!r} for {r.prompt(i)!r}"
            assert task.check_answer(r.target(i), answers[i], r.prompt(i))["correct"]

    round_trip()


def check_vocabulary(s: Subject) -> None:
    """Every rendered character is in the vocabulary, and no problem is longer than max_length:
    the model's embedding and block size are fitted to those two."""
    task = s.task

    @_for_all(s.examples, seed=SEEDS, split=s.any_split())
    def vocabulary(seed: int, split: str) -> None:
        r = task.render(task.problems(np.random.default_rng(seed), 32, split))
        for i in range(len(r)):
            text = r.prompt(i) + r.target(i) + END
            assert task.vocab.contains(text), f"{text!r} has characters outside {task.vocab.chars!r}"
            assert r.length[i] <= s.longest[split], f"{text!r} is longer than max_length()"

    vocabulary()


# ---- checks on the task: position ids and levels ------------------------------------------------

def check_position_ids(s: Subject) -> None:
    """Each scheme's position ids fit the rendered rows and the scheme's slots, come with the
    tokens unchanged and deterministically, and are shifted in training as a whole row: the
    model's position table must hold every id it is given, and a shift must not change meaning."""
    task = s.task

    @_for_all(_few(s), seed=SEEDS, step=STEPS, split=s.any_split())
    def position_ids(seed: int, step: int, split: str) -> None:
        for scheme in s.schemes:
            r = task.render(task.problems(np.random.default_rng(seed), 16, split))
            ids = task.position_ids(r, scheme)
            slots = task.position_scheme(scheme).slots
            assert ids.shape == r.chars.shape, f"{scheme}: ids of the wrong shape"
            assert ids.min(initial=0) >= -slots, f"{scheme}: ids below -{slots}, the scheme's last slot"
            for i in range(len(r)):
                assert not ids[i, r.length[i]:].any(), f"{scheme}: non-zero ids past the end of row {i}"
            top = int(ids.max(initial=0)) + 8
            _check_batch_ids(s, scheme, slots, top, seed, step, split)
            _check_shift(task, scheme, top, seed, split)

    position_ids()


def _check_batch_ids(s: Subject, scheme: str, slots: int, top: int, seed: int, step: int, split: str) -> None:
    """A batch with ids carries the batch's very tokens beside them, the same every time, within
    [-slots, top]."""
    x0, _ = s.task.batch(seed, split, step, 0, 16, s.block(split))
    x1, _ = s.task.batch(seed, split, step, 0, 16, s.block(split), PositionIds(scheme, top))
    x2, _ = s.task.batch(seed, split, step, 0, 16, s.block(split), PositionIds(scheme, top))
    assert x1.shape == (*x0.shape, 2) and np.array_equal(x1[..., 0], x0), f"{scheme}: ids changed the tokens"
    assert np.array_equal(x1, x2), f"{scheme}: ids are not a pure function of (seed, split, step)"
    got = x1[..., 1]
    assert -slots <= got.min() and got.max() <= top, f"{scheme}: shifted ids outside [-{slots}, max_pos]"


def _check_shift(task: Task, scheme: str, top: int, seed: int, split: str) -> None:
    """Shifting moves the positions (> 0) by one offset per row and leaves slots and "none" be."""
    probs = task.problems(np.random.default_rng(seed), 16, split)
    xs, _ = task.encode_batch(probs, np.random.default_rng(seed), "train", 10_000, PositionIds(scheme, top))
    plain = task.position_ids(task.render(probs), scheme)[:, : xs.shape[1]]
    shifted = xs[..., 1]
    assert np.array_equal(shifted <= 0, plain <= 0), f"{scheme}: shifting moved a slot or a 0 id"
    assert np.array_equal(np.minimum(shifted, 0), np.minimum(plain, 0)), f"{scheme}: shifting changed a slot id"
    moved = shifted - plain
    assert all(len(set(row[p > 0].tolist())) <= 1 for row, p in zip(moved, plain)), \
        f"{scheme}: shifting moved the positions of one row by different offsets"


def check_levels(s: Subject) -> None:
    """Every level builds, draws problems no harder than the task's, and trains: its batches
    are the task's encoding of problems the task's own solver and parser agree on."""
    task = s.task
    cur = Curriculum(task, 0.25)

    @_for_all(_few(s), seed=SEEDS, step=STEPS)
    def levels(seed: int, step: int) -> None:
        for k in range(len(cur)):
            p = cur.problems(k, np.random.default_rng(seed), 32)
            r, answers = task.render(p), task.solve(p)
            assert not task.is_test(p).any(), f"level {k} drew a test problem for training"
            for i in range(len(p)):
                assert task.parse_answer(r.target(i)) == answers[i], f"level {k}: {r.prompt(i)!r} does not round-trip"
                assert r.length[i] <= s.longest["train"], f"level {k}: {r.prompt(i)!r} is longer than the task's problems"
            x, _ = cur.batch(k, seed, "train", step, 0, 16, s.block("train"))
            assert np.array_equal(x, cur.batch(k, seed, "train", step, 0, 16, s.block("train"))[0]), \
                f"level {k}: batches are not a pure function of (seed, split, step, level)"

    levels()


# ---- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """A check on a constructed task: its name in `workbench check`'s output (formatted with the
    subject's schemes), the function, and which tasks it applies to."""

    name: str
    run: Callable[[Subject], None]
    applies: Callable[[Subject], bool] = lambda s: True

    def title(self, s: Subject) -> str:
        return self.name.format(schemes=", ".join(s.schemes))


def _makes_problems(s: Subject) -> bool:
    return s.problems


def _declares_levels(s: Subject) -> bool:
    return s.problems and type(s.task).levels is not Task.levels


CHECKS: tuple[Check, ...] = (
    Check("determinism per (seed, split, step)", check_determinism),
    Check("different seeds, different data", check_seeds_differ),
    Check("train and test disjoint", check_disjoint, _makes_problems),
    Check("masks line up with targets", check_masks, _makes_problems),
    Check("parse_answer(render) == solve", check_round_trip, _makes_problems),
    Check("tokens in the vocabulary", check_vocabulary, _makes_problems),
    Check("position ids ({schemes})", check_position_ids, lambda s: bool(s.schemes)),
    Check("levels of difficulty", check_levels, _declares_levels),
)


# ---- running them --------------------------------------------------------------------------------

def _run(name: str, fn: Callable[[], object]) -> CheckResult:
    """fn's outcome: any exception is a failure, reported with where it was raised; none stops the others."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the others
        last = traceback.extract_tb(e.__traceback__)[-1]
        return CheckResult(name, False, f"{type(e).__name__}: {e} ({last.name}, line {last.lineno})")
    return CheckResult(name, True)


# 25 examples: each one renders whole batches (up to 48 problems), so a check sees ~1000 problems in seconds
def run_checks(cls: type, config=None, examples: int = 25) -> list[CheckResult]:
    """Every check that applies to the task, in order; a broken contract or a task that cannot be
    constructed stops them there."""
    results = [_run("contract", lambda: check_contract(cls))]
    if not results[0].ok:
        return results
    if lines := placeholder_lines(cls):  # a check only while the template's markers are there
        results.append(_run("new-task placeholders replaced", lambda: check_no_placeholders(cls, lines)))
    results.append(_run("config validation", lambda: check_config_validation(cls)))
    built: list[Subject] = []
    results.append(_run("construct", lambda: built.append(Subject.of(cls() if config is None else cls(config), examples))))
    if not built:
        return results
    s = built[0]
    return results + [_run(c.title(s), lambda c=c: c.run(s)) for c in CHECKS if c.applies(s)]


def check_task(cls: type, config=None, examples: int = 25) -> list[CheckResult]:
    """Run every check; raise TaskCheckFailed listing the failures."""
    results = run_checks(cls, config, examples)
    failed = [r for r in results if not r.ok]
    if failed:
        raise TaskCheckFailed("; ".join(f"{r.name}: {r.detail}" for r in failed))
    return results
