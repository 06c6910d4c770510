"""Whatever is typed at the calculator (`workbench ask RUN "9**9**9**9"`), it is read by the task's
own grammar within fixed bounds: a quick answer or one ExprError (a ValueError), never a power
tower, a RecursionError or minutes of big-integer arithmetic; valid expressions keep Python's value."""

import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import cli
from tasks.calculator import MAX_PROMPT_CHARS, CalculatorConfig, CalculatorTask, evaluate_python
from tasks.expr import MAX_DEPTH, MAX_DIGITS, MAX_OPS, Bin, ExprError, Num, Syntax

QUICK = 2.0  # seconds; the worst accepted prompt takes about 0.1 s on a loaded 2-core machine

CONFIGS = [CalculatorConfig(), CalculatorConfig(cot="full", max_digits=3), CalculatorConfig(cot="none"),
           CalculatorConfig(precedence="left", division="floor", reverse_numbers=False)]
TASKS = [CalculatorTask(c) for c in CONFIGS]

ALPHABET = "0123456789+-*/()= " + "x^.%\n\t٣_e"
NASTY = [
    "9**9**9**9", "9**9**9", "2**100000", "10**10**10", "1//2", "()", "(())", "1 2", "12 + 7", "--1", "+1",
    "1+", "1=2=3", "=", "", " ", "1e9999", "٣+1", "__import__('os')", "1_000*3", "(" * 100 + "1" + ")" * 100,
    "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
    "(" * 5000, ")" * 5000, "1+" * (MAX_OPS + 1) + "1", "+".join(["1"] * 5000), "9" * 5000, "9" * 10**6,
    "*".join(["9" * 50] * 5), "9" * 127 + "*" + "9" * 127, "9" * 126 + "/" + "7" * 127, "1/0", "5/(3-3)", "7/2",
    "-" + "9" * (MAX_PROMPT_CHARS - 1), "(-1)*" * 50 + "1",
]

prompts = st.one_of(
    st.text(alphabet=ALPHABET, max_size=300),
    st.text(alphabet="0123456789+-*/()", min_size=1, max_size=MAX_PROMPT_CHARS + 20),
    st.sampled_from(NASTY),
    st.builds(lambda s, k: s * k, st.sampled_from(["9**", "(", "1+", "(1+", "9", "-(", "1*(", ")"]),
              st.integers(1, 3000)),
)


def ask_pipeline(task: CalculatorTask, text: str, completion: str) -> None:
    """What `workbench ask` does with a prompt, minus the model: parse, render, solve, check."""
    p = task.problems_from_prompts([text])
    r = task.render(p)
    expected = task.solve(p)[0]
    assert task.parse_answer(r.target(0)) == expected
    assert task.trace_errors(r.prompt(0), r.target(0)) == []
    task.trace_errors(r.prompt(0), completion)  # a model's (here random) completion is checked too
    task.check_answer(completion, expected, r.prompt(0))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=prompts, completion=st.text(alphabet="0123456789+-*/()=[],r", max_size=80))
def test_any_prompt_is_quick_and_raises_only_expr_error(text, completion):
    for task in TASKS:
        start = time.perf_counter()
        try:
            ask_pipeline(task, text, completion)
        except ExprError:
            pass
        assert time.perf_counter() - start < QUICK, (task.config, text[:80])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=prompts, precedence=st.sampled_from(["standard", "left"]), division=st.sampled_from(["exact", "floor"]))
def test_evaluate_python_evaluates_only_the_grammar(text, precedence, division):
    start = time.perf_counter()
    try:
        v = evaluate_python(text, precedence, division)
    except ExprError:
        pass
    else:
        assert isinstance(v, int)
    assert time.perf_counter() - start < QUICK, text[:80]


@pytest.mark.parametrize("text", ["9**9**9**9", "2**100000", "1//2", "()", "1 2", "(" * 1000 + "1" + ")" * 1000,
                                  "+".join(["1"] * 5000), "9" * 5000, "1/0"])
def test_power_towers_and_the_like_are_refused(text):
    for precedence in ("standard", "left"):
        with pytest.raises(ExprError):
            evaluate_python(text, precedence)
    for task in TASKS:
        with pytest.raises(ValueError):
            task.parse_prompt(text)


# ---- valid expressions keep Python's value -------------------------------------------------------

trees = st.recursive(
    st.integers(-999, 99_999).map(Num),
    lambda kids: st.builds(Bin, st.sampled_from("+-*/"), kids, kids),
    max_leaves=10,
)


def reference(node, division: str) -> int:
    """The tree's value by Python's integers, division by division (exact: Fraction must be whole)."""
    if isinstance(node, Num):
        return node.value
    a, b = reference(node.left, division), reference(node.right, division)
    if node.op == "+":
        return a + b
    if node.op == "-":
        return a - b
    if node.op == "*":
        return a * b
    if b == 0:
        raise ZeroDivisionError
    if division == "floor":
        return a // b
    q = Fraction(a, b)
    if q.denominator != 1:
        raise ArithmeticError("inexact")
    return int(q)


@settings(max_examples=300, deadline=None)
@given(tree=trees, precedence=st.sampled_from(["standard", "left"]), division=st.sampled_from(["exact", "floor"]))
def test_valid_expressions_equal_python_integer_arithmetic(tree, precedence, division):
    text = Syntax(precedence).render(tree)
    task = CalculatorTask(CalculatorConfig(precedence=precedence, division=division, reverse_numbers=False))
    try:
        want = reference(tree, division)
    except (ZeroDivisionError, ArithmeticError):
        with pytest.raises(ExprError):
            task.parse_prompt(text)
        return
    assert task.solve(task.problems_from_prompts([text]))[0] == want
    assert evaluate_python(text, precedence, division) == want
    assert task.parse_answer(task.target(task.parse_prompt(text + "="))) == want
    if precedence == "standard":  # Python's own parser agrees as well
        py = text.replace("/", "//") if division == "floor" else text
        got = eval(py) if division == "floor" else eval(  # noqa: S307 (rendered from a tree)
            __import__("re").sub(r"(\d+)", r"Fraction(\1)", py), {"Fraction": Fraction})
        assert got == want


def test_worked_bounds():
    task = CalculatorTask()
    assert task.solve(task.problems_from_prompts(["(" * MAX_DEPTH + "2*3" + ")" * MAX_DEPTH])) == [6]
    longest = "+".join(["9"] * (MAX_PROMPT_CHARS // 2)) + "="
    assert len(longest) == MAX_PROMPT_CHARS and task.parse_answer(task.render(
        task.problems_from_prompts([longest])).target(0)) == 9 * (MAX_PROMPT_CHARS // 2)
    with pytest.raises(ExprError, match="characters"):
        task.parse_prompt("1" + longest)
    # the parser's own bounds hold for any caller (a model's trace step, evaluate_python)
    syn = Syntax()
    assert syn.parse("+".join(["1"] * (MAX_OPS + 1))) is not None
    with pytest.raises(ExprError, match="operations"):
        syn.parse("+".join(["1"] * (MAX_OPS + 2)))
    with pytest.raises(ExprError, match="nested"):
        syn.parse("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExprError, match="digits"):
        syn.parse("9" * (MAX_DIGITS + 1))
    assert task.trace_errors("42=", "24") == []  # a bare number is its own trace (reversed digits)
    assert task.trace_errors("42=", "42")
    with pytest.raises(ValueError, match="max_ops"):
        CalculatorConfig(max_ops=MAX_OPS + 1)
    with pytest.raises(ValueError, match="max_digits"):
        CalculatorConfig(max_ops=3, max_digits=300)


# ---- the command line ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calc_run(tmp_path_factory):
    from experiments.cli import main

    out = tmp_path_factory.mktemp("runs") / "calc"
    code = main(["train", "--task", "calculator", "--steps", "2", "--set", "model.n_layer=1", "--set", "model.n_head=2",
                 "--set", "model.n_embd=32", "--set", "train.batch_size=8", "--set", "train.eval_iters=1",
                 "--out", str(out), "-q", "--target-acc", "0", "--device", "cpu"])
    assert code == 0
    return out


@pytest.mark.parametrize("prompt", ["9**9**9**9", "1//2", "()", "12+", "1/0", "7/2", "abc", "(" * 5000 + "1",
                                    "+".join(["1"] * 5000), "9" * 100_000, ""])
def test_ask_refuses_bad_prompts_with_one_line(calc_run, capsys, prompt):
    start = time.perf_counter()
    code, out, err = cli(capsys, "ask", calc_run, prompt, "--device", "cpu")
    assert time.perf_counter() - start < 30  # the run loads in this time; the prompt adds next to nothing
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) < 300, err
    assert "Traceback" not in err


def test_ask_still_answers_valid_prompts(calc_run, capsys):
    code, out, err = cli(capsys, "ask", calc_run, "12+7*3-5", "2*(3-5)", "--device", "cpu")
    assert code == 0, err
    assert "expected    28" in out and "expected    -4" in out
