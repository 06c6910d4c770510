"""The gallery tasks: the conformance kit on each, plus answers against plain Python."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.copy import CopyConfig, CopyTask
from tasks.modular import ModularConfig, ModularTask
from tasks.parity import ParityConfig, ParityTask
from tasks.reverse import ReverseTask
from tasks.sort import SortConfig, SortTask
from tasks.testing import check_task


@pytest.mark.parametrize("cls,cfg", [(CopyTask, None), (CopyTask, CopyConfig(min_len=5, max_len=20, alphabet="xyz")),
                                     (ReverseTask, None), (SortTask, None), (SortTask, SortConfig(max_len=15)),
                                     (ParityTask, None), (ParityTask, ParityConfig(max_len=4, ood_max_len=6)),
                                     (ModularTask, None), (ModularTask, ModularConfig(p=11, op="-", train_fraction=0.3)),
                                     (ModularTask, ModularConfig(tokens="symbols"))])
def test_conformance(cls, cfg):
    check_task(cls, cfg, examples=8)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_answers_against_python(seed):
    rng = np.random.default_rng(seed)
    for task, fn in ((CopyTask(), lambda s: s), (ReverseTask(), lambda s: s[::-1]), (SortTask(), lambda s: "".join(sorted(s))),
                     (ParityTask(), lambda s: str(s.count("1") % 2))):
        r = task.render(task.problems(rng, 16, "train"))
        for i in range(len(r)):
            assert r.target(i) == fn(r.prompt(i)[:-1])
    m = ModularTask()
    r = m.render(m.problems(rng, 16, "train"))
    for i in range(len(r)):
        a, b = map(int, r.prompt(i)[:-1].split("/"))
        assert (int(r.target(i)) * b - a) % 97 == 0
    s = ModularTask(ModularConfig(tokens="symbols", op="*"))
    r = s.render(s.problems(rng, 16, "train"))
    for i in range(len(r)):
        prompt, target = r.prompt(i), r.target(i)
        assert len(prompt) == 4 and prompt[1] == "*" and prompt[3] == "="
        a, b, c = (ord(ch) - 0x4E00 for ch in (prompt[0], prompt[2], target))
        assert 0 <= c < 97 and c == a * b % 97


def test_modular_train_fraction_is_the_finite_training_set():
    task = ModularTask(ModularConfig(p=13, op="+", train_fraction=0.5))
    every = task.sample(np.random.default_rng(0), 1, "train").__class__(
        a=np.repeat(np.arange(13), 13), b=np.tile(np.arange(13), 13))
    held = task.is_test(every)
    assert 0.35 < held.mean() < 0.65  # about half the 169 pairs are test-only
    train = task.problems(np.random.default_rng(1), 2000, "train")
    seen = set(zip(train["a"].tolist(), train["b"].tolist()))
    assert seen == {(a, b) for a, b, h in zip(every["a"].tolist(), every["b"].tolist(), held) if not h}


def test_parity_ood_is_longer():
    task = ParityTask(ParityConfig(max_len=6))
    p = task.problems(np.random.default_rng(0), 200, "ood")
    assert p["length"].min() >= 7 and p["length"].max() <= 12


@pytest.mark.parametrize("cls,bad", [(CopyConfig, dict(alphabet="a1")), (CopyConfig, dict(min_len=0)),
                                     (SortConfig, dict(min_len=5, max_len=3)), (ParityConfig, dict(ood_max_len=5)),
                                     (ModularConfig, dict(p=12)), (ModularConfig, dict(train_fraction=1.0)),
                                     (ModularConfig, dict(op="^")), (ModularConfig, dict(tokens="letters"))])
def test_config_validation(cls, bad):
    with pytest.raises(ValueError):
        cls(**bad)
