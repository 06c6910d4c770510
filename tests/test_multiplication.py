import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.multiplication import MultiplicationConfig, MultiplicationTask
from tasks.testing import check_task


@settings(max_examples=40, deadline=None)
@given(lo=st.integers(1, 3), hi=st.integers(3, 6), fmt=st.sampled_from(["plain", "reversed", "scratchpad"]),
       seed=st.integers(0, 2**32 - 1))
def test_answers_equal_python_and_scratchpads_check_out(lo, hi, fmt, seed):
    task = MultiplicationTask(MultiplicationConfig(min_digits=lo, max_digits=hi, format=fmt))
    p = task.problems(np.random.default_rng(seed), 32, "train")
    r = task.render(p)
    for i in range(len(p)):
        a, b = int(p["a"][i]), int(p["b"][i])
        assert r.prompt(i) == f"{a}*{b}="
        assert task.parse_answer(r.target(i)) == a * b
        assert task.trace_errors(r.prompt(i), r.target(i)) == []
        assert len(r.prompt(i)) + len(r.target(i)) + 1 <= task.max_length()


def test_worked_example():
    t = MultiplicationTask()
    r = t.render(t.problems_from_prompts(["12*34="]))
    assert r.target(0) == "84+063=804"
    t3 = MultiplicationTask(MultiplicationConfig(max_digits=3))
    assert t3.render(t3.problems_from_prompts(["123*456"])).target(0) == "837+0516+00294=8886+00294=88065"
    assert t.trace_errors("12*34=", "84+062=803")[0].startswith("step 1")
    assert t.trace_errors("12*34=", "84+063=805")[0].startswith("step 2")
    assert t.trace_errors("123*456=", "837+0516+00294=88065")  # skipped a step


@pytest.mark.parametrize("fmt", ["plain", "reversed", "scratchpad"])
def test_contract(fmt):
    check_task(MultiplicationTask, MultiplicationConfig(max_digits=3, format=fmt), examples=8)


@pytest.mark.parametrize("bad", [dict(min_digits=0), dict(min_digits=3, max_digits=2), dict(format="x"),
                                 dict(b_min_digits=4, b_max_digits=3), dict(max_digits=10)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        MultiplicationConfig(**bad)
