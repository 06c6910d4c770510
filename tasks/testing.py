"""A conformance kit for task classes: `check_task(MyTask)` runs property-based checks.

Use it in a test:

    from tasks.testing import check_task
    def test_my_task():
        check_task(MyTask)                       # default config
        check_task(MyTask, MyTask.Config(n=7))   # another one

It raises TaskCheckFailed naming every failed check.  `run_checks` returns the
results instead (what `workbench check` prints).  Seeds, steps and batch sizes
are drawn by hypothesis; a failure reports the smallest example it found.
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

from tasks.base import Task, check_contract
from tasks.curriculum import Curriculum
from tasks.encode import END, IGNORE, to_xy
from tasks.positions import SCHEMES, PositionIds

LOSS_BLOCK = 32  # window length the batch checks use for a loss task (it has no longest problem)
PLACEHOLDER = "TODO(new-task)"  # what `workbench new-task` marks in the example it writes


class TaskCheckFailed(AssertionError):
    pass


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


def _settings(n: int):
    # explicit settings win over any hypothesis profile: derandomized, no database, so `workbench check` is reproducible
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), derandomize=True)


def check_config_validation(cls: type) -> None:
    """Absurd values for numeric and string fields are refused with ValueError."""
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


def _keys(task: Task, p) -> set:
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


# 25 examples: each one renders whole batches (up to 48 problems), so a check sees ~1000 problems in seconds
def run_checks(cls: type, config=None, examples: int = 25) -> list[CheckResult]:
    results: list[CheckResult] = []

    def record(name: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the others
            last = traceback.extract_tb(e.__traceback__)[-1]
            results.append(CheckResult(name, False, f"{type(e).__name__}: {e} ({last.name}, line {last.lineno})"))
            return False
        results.append(CheckResult(name, True))
        return True

    if not record("contract", lambda: check_contract(cls)):
        return results
    if placeholders := placeholder_lines(cls):  # a check only while the template's markers are there
        record("new-task placeholders replaced", lambda: _no_placeholders(cls, placeholders))
    record("config validation", lambda: check_config_validation(cls))
    holder: list[Task] = []
    if not record("construct", lambda: holder.append(cls(config) if config is not None else cls())):
        return results
    task = holder[0]
    problem_task = task.metric == "accuracy"  # it has problems and answers, not just batches
    seeds, steps, sizes = st.integers(0, 2**31 - 1), st.integers(0, 10**6), st.integers(1, 48)
    split_names = [s for s in task.splits if s in ("train", "test", "ood")] if problem_task else list(task.splits)
    longest = {s: task.max_length((s,)) for s in split_names} if problem_task else {}

    def block(split: str) -> int:
        # a problem task's batch holds its longest problem whole; a loss task's windows are any size
        return longest[split] if problem_task else LOSS_BLOCK

    @_settings(examples)
    @given(seed=seeds, step=steps, size=sizes, split=st.sampled_from(split_names))
    def determinism(seed, step, size, split):
        a = task.batch(seed, split, step, 0, size, block(split))
        b = task.batch(seed, split, step, 0, size, block(split))
        assert all(np.array_equal(u, v) for u, v in zip(a, b)), "same (seed, split, step) gave different batches"

    # fewer: each example compares 3 x 64 rows, and a seed that is ignored fails on any of them
    @_settings(max(5, examples // 3))
    @given(seed=seeds, step=steps)
    def seeds_differ(seed, step):
        a = task.batch(seed, "train", step, 0, 64, block("train"))
        b = task.batch(seed + 1, "train", step, 0, 64, block("train"))
        c = task.batch(seed, "train", step + 1, 0, 64, block("train"))
        for other, what in ((b, "seed+1"), (c, "step+1")):
            assert not all(np.array_equal(u, v) for u, v in zip(a, other)), f"{what} gave the same 64 rows"

    def disjoint():
        rng = np.random.default_rng(12345)
        train, test = task.problems(rng, 3000, "train"), task.problems(rng, 600, "test")
        assert not task.is_test(train).any(), "a train problem is in the test set"
        assert task.is_test(test).all(), "a test problem is not in the test set"
        shared = _keys(task, train) & _keys(task, test)
        assert not shared, f"train and test share {len(shared)} problems, e.g. {next(iter(shared))}"

    @_settings(examples)
    @given(seed=seeds, split=st.sampled_from(split_names))
    def masks(seed, split):
        r = task.render(task.problems(np.random.default_rng(seed), 16, split))
        x, y = to_xy(r, task.vocab, task.mask_prompt)
        for i in range(len(r)):
            P, L = int(r.prompt_len[i]), int(r.length[i])
            seq = task.vocab.encode(r.prompt(i) + r.target(i) + END)
            assert x[i, : L - 1].tolist() == seq[:-1], "x is not the rendered sequence"
            want = [seq[t + 1] if (P <= t + 1 or not task.mask_prompt) and t + 1 < L else IGNORE
                    for t in range(x.shape[1])]
            assert y[i].tolist() == want, f"targets do not line up with the mask in row {i}: {r.prompt(i)!r}"

    @_settings(examples)
    @given(seed=seeds, split=st.sampled_from(split_names))
    def round_trip(seed, split):
        p = task.problems(np.random.default_rng(seed), 32, split)
        r, answers = task.render(p), task.solve(p)
        assert len(answers) == len(p), "solve returned the wrong number of answers"
        for i in range(len(p)):
            got = task.parse_answer(r.target(i))
            assert got == answers[i], f"parse_answer(render) gave {got!r}, the solver {answers[i]!r} for {r.prompt(i)!r}"
            assert task.check_answer(r.target(i), answers[i], r.prompt(i))["correct"]

    @_settings(examples)
    @given(seed=seeds, split=st.sampled_from(split_names))
    def vocabulary(seed, split):
        r = task.render(task.problems(np.random.default_rng(seed), 32, split))
        for i in range(len(r)):
            text = r.prompt(i) + r.target(i) + END
            assert task.vocab.contains(text), f"{text!r} has characters outside {task.vocab.chars!r}"
            assert r.length[i] <= longest[split], f"{text!r} is longer than max_length()"

    schemes = [s for s in SCHEMES if _has_scheme(task, s)] if problem_task else []

    @_settings(max(5, examples // 3))
    @given(seed=seeds, step=steps, split=st.sampled_from(split_names))
    def position_ids(seed, step, split):
        for scheme in schemes:
            r = task.render(task.problems(np.random.default_rng(seed), 16, split))
            ids = task.position_ids(r, scheme)
            slots = task.position_scheme(scheme).slots
            assert ids.shape == r.chars.shape, f"{scheme}: ids of the wrong shape"
            assert ids.min(initial=0) >= -slots, f"{scheme}: ids below -{slots}, the scheme's last slot"
            for i in range(len(r)):
                assert not ids[i, r.length[i]:].any(), f"{scheme}: non-zero ids past the end of row {i}"
            need = int(ids.max(initial=0))
            top = need + 8
            x0, _ = task.batch(seed, split, step, 0, 16, block(split))
            x1, _ = task.batch(seed, split, step, 0, 16, block(split), PositionIds(scheme, top))
            x2, _ = task.batch(seed, split, step, 0, 16, block(split), PositionIds(scheme, top))
            assert x1.shape == (*x0.shape, 2) and np.array_equal(x1[..., 0], x0), f"{scheme}: ids changed the tokens"
            assert np.array_equal(x1, x2), f"{scheme}: ids are not a pure function of (seed, split, step)"
            got = x1[..., 1]
            assert -slots <= got.min() and got.max() <= top, f"{scheme}: shifted ids outside [-{slots}, max_pos]"
            # shifting moves the positions (> 0) by one offset per row and leaves slots and "none" be
            probs = task.problems(np.random.default_rng(seed), 16, split)
            xs, _ = task.encode_batch(probs, np.random.default_rng(seed), "train", 10_000, PositionIds(scheme, top))
            plain = task.position_ids(task.render(probs), scheme)[:, : xs.shape[1]]
            shifted = xs[..., 1]
            assert np.array_equal(shifted <= 0, plain <= 0), f"{scheme}: shifting moved a slot or a 0 id"
            assert np.array_equal(np.minimum(shifted, 0), np.minimum(plain, 0)), f"{scheme}: shifting changed a slot id"
            moved = shifted - plain
            assert all(len(set(row[p > 0].tolist())) <= 1 for row, p in zip(moved, plain)), \
                f"{scheme}: shifting moved the positions of one row by different offsets"

    @_settings(max(5, examples // 3))
    @given(seed=seeds, step=steps)
    def levels(seed, step):
        """Every level builds, draws problems no harder than the task's, and trains: its batches
        are the task's encoding of problems the task's own solver and parser agree on."""
        cur = Curriculum(task, 0.25)
        for k in range(len(cur)):
            p = cur.problems(k, np.random.default_rng(seed), 32)
            r, answers = task.render(p), task.solve(p)
            assert not task.is_test(p).any(), f"level {k} drew a test problem for training"
            for i in range(len(p)):
                assert task.parse_answer(r.target(i)) == answers[i], f"level {k}: {r.prompt(i)!r} does not round-trip"
                assert r.length[i] <= longest["train"], f"level {k}: {r.prompt(i)!r} is longer than the task's problems"
            x, _ = cur.batch(k, seed, "train", step, 0, 16, block("train"))
            assert np.array_equal(x, cur.batch(k, seed, "train", step, 0, 16, block("train"))[0]), \
                f"level {k}: batches are not a pure function of (seed, split, step, level)"

    checks = [("determinism per (seed, split, step)", determinism), ("different seeds, different data", seeds_differ)]
    if problem_task:
        checks += [("train and test disjoint", disjoint), ("masks line up with targets", masks),
                   ("parse_answer(render) == solve", round_trip), ("tokens in the vocabulary", vocabulary)]
    if schemes:
        checks += [(f"position ids ({', '.join(schemes)})", position_ids)]
    if problem_task and type(task).levels is not Task.levels:  # the task declares levels
        checks += [("levels of difficulty", levels)]
    for name, fn in checks:
        record(name, fn)
    return results


def placeholder_lines(cls: type) -> list[int]:
    """The lines of the class's file that still hold a `workbench new-task` placeholder."""
    try:
        lines = inspect.getsource(inspect.getmodule(cls)).splitlines()
    except (OSError, TypeError):  # no source to read (a class built at run time)
        return []
    return [i for i, line in enumerate(lines, 1) if PLACEHOLDER in line]


def _no_placeholders(cls: type, lines: list[int]) -> None:
    where = ", ".join(map(str, lines))
    raise AssertionError(f"{inspect.getsourcefile(cls)} is still the new-task template's example: replace what "
                         f"each {PLACEHOLDER} marks (line {where}) with your task, then delete the markers")


def _has_scheme(task: Task, scheme: str) -> bool:
    try:
        task.position_scheme(scheme)
    except ValueError:  # the task does not number its tokens this way
        return False
    return True


def check_task(cls: type, config=None, examples: int = 25) -> list[CheckResult]:
    """Run every check; raise TaskCheckFailed listing the failures."""
    results = run_checks(cls, config, examples)
    failed = [r for r in results if not r.ok]
    if failed:
        raise TaskCheckFailed("; ".join(f"{r.name}: {r.detail}" for r in failed))
    return results
