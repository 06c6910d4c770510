"""Calculator chains: answers against Python, traces against the step checker, mutations rejected."""

import json
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.calculator import CalculatorConfig, CalculatorTask, _cdf, _draw, evaluate_python, has_big_step
from tasks.expr import Num, Syntax, render_trace, split_trace
from tasks.testing import check_task

configs = st.builds(
    lambda sign_work, **kw: CalculatorConfig(sign_work=sign_work and kw["cot"] in ("mixed", "full"), **kw),
    sign_work=st.booleans(),
    min_ops=st.integers(1, 2),
    max_ops=st.integers(2, 4),
    max_digits=st.integers(1, 3),
    ops=st.sampled_from(["+-*/", "+", "-", "*", "/", "+*", "-/", "*/", "+-"]),
    precedence=st.sampled_from(["standard", "left"]),
    division=st.sampled_from(["exact", "floor"]),
    parens=st.sampled_from([0.0, 0.5]),
    cot=st.sampled_from(["none", "steps", "mixed", "full"]),
    reverse_numbers=st.booleans(),
    division_digit_order=st.sampled_from(["trace", "plain"]),
    division_work=st.sampled_from(["short", "subtract"]),
    mixed_division_digits=st.integers(2, 4),
)


def python_value(expr: str, cfg: CalculatorConfig) -> int:
    """Python's own arithmetic; left-to-right chains are parenthesised first."""
    if cfg.precedence == "left":
        assert "(" not in expr
        toks = re.findall(r"\d+|[-+*/]", expr)
        expr = "(" * (len(toks) // 2) + toks[0] + "".join(f"{op}{v})" for op, v in zip(toks[1::2], toks[2::2]))
    if cfg.division == "floor":
        return eval(expr.replace("/", "//"))
    v = eval(re.sub(r"(\d+)", r"Fraction(\1)", expr), {"Fraction": Fraction})
    assert v.denominator == 1, f"{expr} leaves a remainder"
    return int(v)


@settings(max_examples=60, deadline=None)
@given(cfg=configs, seed=st.integers(0, 2**32 - 1), split=st.sampled_from(["train", "test"]))
def test_answers_equal_python_and_traces_check_out(cfg, seed, split):
    task = CalculatorTask(cfg)
    p = task.problems(np.random.default_rng(seed), 24, split)
    r = task.render(p)
    for i in range(len(p)):
        prompt, target = r.prompt(i), r.target(i)
        expr = prompt[:-1]
        if cfg.precedence == "standard" or "(" not in expr:
            assert task.parse_answer(target) == python_value(expr, cfg)
        assert task.solve(p.take(np.array([i])))[0] == task.parse_answer(target)
        assert task.trace_errors(prompt, target) == [], (prompt, target)
        assert set(p["ops"][i]) <= set(cfg.ops) and cfg.min_ops <= p["n_ops"][i] <= cfg.max_ops
        assert p["max_digits"][i] <= cfg.max_digits


def traced(cot="steps", **kw):
    return CalculatorTask(CalculatorConfig(cot=cot, **kw))


def test_worked_examples():
    t = traced()
    assert t.target(t.parse_prompt("12+7*3-5=")) == "21+12-5=33-5=82"
    assert t.parse_answer("21+12-5=33-5=82") == 28
    full = traced("full")
    assert full.target(full.parse_prompt("34*56+1")) == "[43*6=402,43*05=0071,402+0071=4091]4091+1=5091"
    plain = traced(reverse_numbers=False)
    assert plain.target(plain.parse_prompt("12+7*3-5")) == "12+21-5=33-5=28"
    left = traced(precedence="left", reverse_numbers=False)
    assert left.target(left.parse_prompt("12+7*3-5")) == "19*3-5=57-5=52"
    assert plain.target(plain.parse_prompt("3-10+4")) == "-7+4=-3"
    assert plain.target(plain.parse_prompt("2*(3-5)")) == "2*(-2)=-4"
    fl = traced(division="floor", reverse_numbers=False)
    assert fl.target(fl.parse_prompt("3-10/4")) == "3-2=1" and fl.solve(fl.problems_from_prompts(["(0-7)/2", "0-7/2"])) == [-4, -3]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cot=st.sampled_from(["steps", "mixed", "full"]), rev=st.booleans(),
       data=st.data())
def test_mutated_traces_fail(seed, cot, rev, data):
    task = traced(cot, reverse_numbers=rev, min_ops=2, max_ops=4)
    r = task.render(task.problems(np.random.default_rng(seed), 8, "train"))
    for i in range(len(r)):
        prompt, target = r.prompt(i), r.target(i)
        # a wrong digit anywhere
        pos = [k for k, ch in enumerate(target) if ch.isdigit()]
        k = data.draw(st.sampled_from(pos))
        d = data.draw(st.sampled_from([c for c in "0123456789" if c != target[k]]))
        assert task.trace_errors(prompt, target[:k] + d + target[k + 1:]), (prompt, target, k, d)
        # a skipped step
        steps = target.split("=") if cot == "steps" else None
        if steps and len(steps) >= 2:
            j = data.draw(st.integers(0, len(steps) - 2))
            assert task.trace_errors(prompt, "=".join(steps[:j] + steps[j + 1:]))


def test_wrong_precedence_fails():
    task = traced(reverse_numbers=False)
    wrong = render_trace(Syntax("left").parse("12+7*3-5"), Syntax("standard"), "exact")
    assert wrong == "19*3-5=57-5=52"
    errors = task.trace_errors("12+7*3-5=", wrong)
    assert errors and errors[0].startswith("step 1")
    # reducing the later product first is a correct reduction too: only the order differs
    assert task.trace_errors("2*3+4*5=", "2*3+20=6+20=26") == []


def test_full_work_is_checked():
    t = traced("full", reverse_numbers=False)
    good = t.target(t.parse_prompt("34*56"))
    assert good == "[34*6=204,34*50=1700,204+1700=1904]1904"
    assert t.trace_errors("34*56=", "1904")  # work missing
    assert t.trace_errors("34*56=", good.replace("1700,", "1600,"))
    assert t.target(t.parse_prompt("1904/56")) == "[190/56=3r22,224/56=4r0]34"


def test_mixed_work_is_only_on_hard_steps_and_checked():
    """cot=mixed: work on a product of two multi-digit numbers and on a division of a 4+-digit value,
    none elsewhere; a trace with work missing, wrong, or where none belongs names its step."""
    t = traced("mixed", reverse_numbers=False)
    assert t.target(t.parse_prompt("34*56+1")) == "[34*6=204,34*50=1700,204+1700=1904]1904+1=1905"
    assert t.target(t.parse_prompt("34*5+1")) == "170+1=171"  # a 1-digit factor: one step
    assert t.target(t.parse_prompt("96/8+1")) == "12+1=13"  # a short division: one step
    assert t.target(t.parse_prompt("2+1904/56")) == "[190/56=3r22,224/56=4r0]2+34=36"
    assert t.trace_errors("34*56+1=", "1904+1=1905")[0].startswith("step 1 work")  # work missing
    wrong = t.trace_errors("34*56+1=", "[34*6=204,34*50=1600,204+1600=1804]1804+1=1805")
    assert wrong and wrong[0].startswith("step 1")
    extra = t.trace_errors("2+34*5=", "[34*5=170]2+170=172")  # work where mixed writes none
    assert extra and extra[0].startswith("step 1 work")
    full = traced("full", reverse_numbers=False)
    assert full.target(full.parse_prompt("34*5+1")).startswith("[")  # full writes it there


def test_mixed_division_digits_moves_where_long_division_starts():
    """mixed_division_digits=3: a 3-digit dividend gets its rows (the schoolbook ones, from Python's
    divmod), a 2-digit one none, products unchanged; the checker asks for exactly that work."""
    t = traced("mixed", reverse_numbers=False, mixed_division_digits=3)
    rows, rem = [], 0
    for d in "870":  # 870/6 by hand: bring down a digit, divide, keep the remainder
        q, rem = divmod(rem * 10 + int(d), 6)
        rows.append(f"{(rem + q * 6)}/6={q}r{rem}")
    assert t.target(t.parse_prompt("870/6")) == "[" + ",".join(rows) + "]145"
    assert t.target(t.parse_prompt("96/8+1")) == "12+1=13"
    assert t.target(t.parse_prompt("34*5+1")) == "170+1=171"
    assert t.trace_errors("870/6=", "145")[0].startswith("step 1 work")  # rows missing
    assert t.trace_errors("870/6=", t.target(t.parse_prompt("870/6"))) == []
    four = traced("mixed", reverse_numbers=False)  # the default, 4: one step
    assert four.target(four.parse_prompt("870/6")) == "145"


def test_sign_work_writes_the_positive_difference_before_a_negative_result():
    """sign_work: a + or - whose terms have opposite signs and whose result is negative first writes
    |larger| - |smaller| (checked against Python), then the result with its sign; other steps are
    unchanged, and a trace without that work names its step."""
    t = traced("mixed", mixed_division_digits=3, sign_work=True)
    assert t.target(t.parse_prompt("63-70")) == "[07-36=7]-7"  # 70-63, reversed
    assert t.target(t.parse_prompt("5-12+20")) == "[21-5=7]-7+02=31"
    assert t.target(t.parse_prompt("85-36")) == "94"  # positive: one step
    assert t.target(t.parse_prompt("-7-5")) == "-21"  # both terms negative: no sign to decide
    assert t.trace_errors("63-70=", "-7")[0].startswith("step 1 work")
    assert t.trace_errors("63-70=", "[07-36=8]-7")[0].startswith("step 1 work")
    plain = traced("mixed", reverse_numbers=False, sign_work=True)
    for a in range(-30, 31, 7):
        for b in range(-30, 31, 5):
            for op, v in (("+", a + b), ("-", a - b)):
                prompt = f"{a}{op}({b})" if b < 0 else f"{a}{op}{b}"
                steps = plain.target(plain.parse_prompt(prompt))
                t_term = b if op == "+" else -b
                if v < 0 and a != 0 and t_term != 0 and (a < 0) != (t_term < 0):
                    big, small = max(abs(a), abs(t_term)), min(abs(a), abs(t_term))
                    assert steps == f"[{big}-{small}={big - small}]{v}", prompt
                else:
                    assert steps == str(v), prompt
    without = traced("mixed", reverse_numbers=False)
    assert without.target(without.parse_prompt("63-70")) == "-7"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_plain_long_division_is_schoolbook_long_division(seed):
    """division_digit_order=plain: each item c/b=qrR reads in ordinary notation; checked with Python's
    divmod, the quotient digits spell the quotient, and the trace-order work no longer passes."""
    plain = traced("full", division_digit_order="plain", ops="*/", min_ops=2, max_ops=3, max_digits=3)
    trace = traced("full", ops="*/", min_ops=2, max_ops=3, max_digits=3)
    r = plain.render(plain.problems(np.random.default_rng(seed), 16, "train"))
    seen = 0
    for i in range(len(r)):
        prompt, target = r.prompt(i), r.target(i)
        assert plain.trace_errors(prompt, target) == []
        for work in re.findall(r"\[([^]]*)\]", target):
            items = [re.fullmatch(r"(\d+)/(\d+)=(\d)r(\d+)", w) for w in work.split(",")]
            if not all(items):
                continue  # a product's work: reversed numbers, as before
            seen += 1
            b = int(items[0][2])
            for m in items:
                assert int(m[2]) == b and divmod(int(m[1]), b) == (int(m[3]), int(m[4]))
            for prev, m in zip(items, items[1:]):  # each item brings down one digit after the last remainder
                assert int(m[1]) // 10 == int(prev[4])
            a = int(items[0][1] + "".join(m[1][-1] for m in items[1:]))  # the dividend, digit by digit
            assert divmod(a, b) == (int("".join(m[3] for m in items)), int(items[-1][4]))
        other = trace.render(plain.problems(np.random.default_rng(seed), 16, "train")).target(i)
        if other != target:
            assert plain.trace_errors(prompt, other)  # the same problem's trace-order work fails
    assert seen > 0 or len(r) < 4


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rev=st.booleans())
def test_subtract_work_writes_each_remainder_as_cur_minus_q_times_b(seed, rev):
    """division_work=subtract: item c/b=qRc-p=r with p = q*b and r = c - p < b (Python's ints)."""
    task = traced("full", division_work="subtract", reverse_numbers=rev, ops="*/", min_ops=2, max_ops=3, max_digits=3)
    num = Syntax(reverse=rev).parse_num
    r = task.render(task.problems(np.random.default_rng(seed), 16, "train"))
    for i in range(len(r)):
        prompt, target = r.prompt(i), r.target(i)
        assert task.trace_errors(prompt, target) == []
        for work in re.findall(r"\[([^]]*)\]", target):
            for w in work.split(","):
                m = re.fullmatch(r"(\d+)/(\d+)=(\d+)r(\d+)-(\d+)=(\d+)", w)
                if m is None:
                    assert not re.fullmatch(r"\d+/\d+=\d+r\d+", w)  # no short item left
                    continue
                c, b, q, c2, p, rem = map(num, m.groups())
                assert c2 == c and p == q * b and rem == c - p and 0 <= rem < b
        wrong = re.sub(r"r(\d+)-(\d+)=", "r", target)  # the short form of the same work
        if wrong != target:
            assert task.trace_errors(prompt, wrong)


def test_plain_division_worked_example():
    t = traced("full", division_digit_order="plain")
    assert t.target(t.parse_prompt("1904/56")) == "[190/56=3r22,224/56=4r0]43"
    assert traced("full").target(t.parse_prompt("1904/56")) == "[091/65=3r22,422/65=4r0]43"
    assert t.trace_errors("1904/56=", "[091/65=3r22,422/65=4r0]43")
    sub = traced("full", division_work="subtract")
    assert sub.target(sub.parse_prompt("1904/56")) == "[091/65=3r091-861=22,422/65=4r422-422=0]43"


@pytest.mark.parametrize("cfg", [CalculatorConfig(), CalculatorConfig(cot="none"),
                                 CalculatorConfig(cot="full", max_digits=3, parens=0.3),
                                 CalculatorConfig(cot="full", max_digits=3, division_digit_order="plain"),
                                 CalculatorConfig(precedence="left", division="floor", reverse_numbers=False)])
def test_contract(cfg):
    check_task(CalculatorTask, cfg, examples=8)


@pytest.mark.parametrize("bad", [dict(ops=""), dict(ops="+%"), dict(min_ops=3, max_ops=2), dict(min_ops=0),
                                 dict(max_digits=0), dict(precedence="right"), dict(division="round"),
                                 dict(cot="some"), dict(parens=1.5), dict(op_weights="1,1,1"),
                                 dict(op_weights="1,-1,1,1"), dict(op_weights="0,0,0,0"), dict(op_weights="a,b,c,d"),
                                 dict(n_ops_weights="1,1"), dict(n_ops_weights="1,nan,1"),
                                 dict(digit_weights="1,1,1"), dict(digit_weights="0,0"), dict(digit_weights="-1,2"),
                                 dict(division_digit_order="reversed"), dict(division_work="long"),
                                 dict(big_weight=0.5), dict(big_weight=float("nan")),
                                 dict(mixed_division_digits=1), dict(sign_work=True),
                                 dict(sign_work=True, cot="none")])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        CalculatorConfig(**bad)


def test_old_option_names_still_read():
    """division_digits was renamed division_digit_order (it holds an order, not a number of digits):
    a run record written before (config.json holds every option) and `--set task.division_digits=`
    still mean what they meant, and the old name is cleared, so the configs are equal."""
    old = CalculatorConfig(cot="full", division_digits="plain")
    assert old == CalculatorConfig(cot="full", division_digit_order="plain") and old.division_digits is None
    assert old.replace(max_digits=3).division_digit_order == "plain"
    assert CalculatorConfig().replace(division_digits="plain").division_digit_order == "plain"
    with pytest.raises(ValueError, match="division_digit_order"):
        CalculatorConfig(division_digits="reversed")
    with pytest.raises(ValueError, match="old name of division_digit_order"):
        CalculatorConfig(division_digits="trace", division_digit_order="plain")


def test_op_weights_skew_operators_and_default_data_is_unchanged():
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    uniform = CalculatorTask().problems(rng(), 400, "train")
    explicit = CalculatorTask(CalculatorConfig(op_weights="")).problems(rng(), 400, "train")
    assert list(uniform["expr"]) == list(explicit["expr"])
    skewed = CalculatorTask(CalculatorConfig(op_weights="1,1,6,0")).problems(rng(), 2000, "train")
    text = "".join(skewed["expr"])
    counts = {op: text.count(op) for op in "+-*/"}
    assert counts["/"] == 0 and counts["*"] > 4 * max(counts["+"], counts["-"])
    for expr, ans in zip(skewed["expr"][:200], CalculatorTask(CalculatorConfig(op_weights="1,1,6,0")).solve(
            skewed.take(np.arange(200)))):
        assert ans == python_value(expr, CalculatorConfig())
    short = CalculatorTask(CalculatorConfig(n_ops_weights="8,1,1")).problems(rng(), 2000, "train")
    share = np.bincount(short["n_ops"], minlength=4)[1:] / 2000
    assert share[0] > 0.7 and 0 < share[1] < 0.2 and 0 < share[2] < 0.2
    assert CalculatorTask(CalculatorConfig(n_ops_weights="8,1,1")).max_length() == CalculatorTask().max_length()


def big_reference(node, task: CalculatorTask) -> bool:
    """Each operation is one step, on its operands' values (Python's, from the rendered text)."""
    if isinstance(node, Num):
        return False
    sizes = [abs(evaluate_python(task.prompt_syntax.render(child))) for child in (node.left, node.right)]
    here = node.op in "*/" and max(sizes) >= 10**task.config.max_digits
    return here or big_reference(node.left, task) or big_reference(node.right, task)


def test_big_weight_reweights_training_problems_only():
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    plain, heavy = CalculatorTask(), CalculatorTask(CalculatorConfig(big_weight=4))
    base = plain.problems(rng(), 3000, "train")
    big = [big_reference(nd, plain) for nd in base["tree"]]
    assert big == [has_big_step(nd, 2) for nd in base["tree"]]
    assert any(big) and has_big_step(plain.parse_prompt("76*57/12"), 2)  # the docstring's 4,332 / 12
    assert not has_big_step(plain.parse_prompt("5+76*57-96"), 2)  # 4,332 is only added to
    assert has_big_step(plain.parse_prompt("5+123*4"), 2)  # a typed literal can be long too
    p = heavy.problems(rng(), 3000, "train")
    share, was = np.mean([big_reference(nd, plain) for nd in p["tree"]]), np.mean(big)
    want = 4 * was / (4 * was + 1 - was)  # the odds of a big problem, times 4
    assert abs(share - want) < 0.03, (share, want)
    for split in ("test", "val"):  # evaluation is never reweighted
        assert list(heavy.problems(rng(), 300, split)["expr"]) == list(plain.problems(rng(), 300, split)["expr"])
    for expr, ans in zip(p["expr"][:200], heavy.solve(p.take(np.arange(200)))):
        assert ans == python_value(expr, CalculatorConfig())


def test_digit_weights_skew_operand_sizes():
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    assert list(CalculatorTask().problems(rng(), 300, "train")["expr"]) == list(
        CalculatorTask(CalculatorConfig(digit_weights="")).problems(rng(), 300, "train")["expr"])
    cfg = CalculatorConfig(digit_weights="1,9", op_weights="1,1,1,0")  # no "/": its divisors are not literals
    p = CalculatorTask(cfg).problems(rng(), 1000, "train")
    nums = [int(t) for e in p["expr"] for t in re.findall(r"\d+", e)]
    assert 0.85 < np.mean([n >= 10 for n in nums]) < 0.95
    for expr, ans in zip(p["expr"][:200], CalculatorTask(cfg).solve(p.take(np.arange(200)))):
        assert ans == python_value(expr, cfg)
    ones = CalculatorTask(CalculatorConfig(digit_weights="1,0", ops="+-*")).problems(rng(), 300, "train")
    assert all(len(t) == 1 for e in ones["expr"] for t in re.findall(r"\d+", e))


@pytest.mark.parametrize("text", ["12+", "1++2", "(1+2", "1+2)", "", "1+a", "5/0", "7/2", "4/(2-2)"])
def test_bad_prompts(text):
    with pytest.raises(ValueError):
        CalculatorTask().parse_prompt(text)


def test_split_trace():
    assert split_trace("[a,b]1+2=3") == [(["a", "b"], "1+2"), (None, "3")]


def _hardest_step_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "calc_hardest_step.py"
    spec = importlib.util.spec_from_file_location("calc_hardest_step", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("prompt,cls", [("12+7-5", "easy"), ("24*3", "*1"), ("2496*7", "*1"), ("35/5+9", "/"),
                                        ("24*3*17", "*2x2"), ("39*64*78", "*big"), ("39*64/78+1", "/big"),
                                        ("1+2*3-99/9", "/")])
def test_hardest_step_classes_use_intermediate_values(prompt, cls):
    mod = _hardest_step_script()
    task = CalculatorTask(CalculatorConfig(max_digits=9))
    assert mod.hardest(task.parse_prompt(prompt)) == cls
    ops = mod.operations(task.parse_prompt(prompt))
    assert ops[-1][0] in "+-*/" and len(ops) == sum(prompt.count(o) for o in "+-*/")


def test_hardest_step_table(tmp_path):
    mod = _hardest_step_script()
    lines = [dict(prompt="34*56=", correct=False), dict(prompt="3*5=", correct=True), dict(prompt="1+2=", correct=True),
             dict(prompt="12*34=", correct=True)]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    t = mod.table(path, CalculatorTask(CalculatorConfig(max_digits=9)))
    assert list(t.columns) == ["easy", "*1", "*2x2", "all"]
    assert t.loc["share", "*2x2"] == 0.5 and t.loc["accuracy", "*2x2"] == 0.5 and t.loc["accuracy", "all"] == 0.75


def test_first_error_names_the_step_a_wrong_trace_first_gets_wrong(tmp_path):
    """--errors: each wrong trace is classed by the operation its first rejected step should have done."""
    mod = _hardest_step_script()
    t = traced("mixed", mixed_division_digits=3, sign_work=True)
    assert mod.first_error(t, "63-70=", t.target(t.parse_prompt("63-70"))) is None
    assert mod.first_error(t, "63-70=", "-7") == "- neg work"  # right result, its work missing
    assert mod.first_error(t, "63-70=", "[07-36=7]7") == "- neg"
    assert mod.first_error(t, "1+2*3=", "1+6=8") == "+ 1:1"  # step 2: the model's 1+6, not the prompt's
    assert mod.first_error(t, "1904/56=", "[091/65=3r22,422/65=5r0]43") == "/ 4:2 work"  # 34, a wrong row
    assert mod.first_error(t, "1904/56=", "[091/65=3r22,422/65=5r0]53") == "/ 4:2"  # the result wrong too
    assert mod.first_error(t, "1+2=", "3]") == "malformed"
    lines = [dict(prompt="63-70=", got="-7", correct=True, trace_valid=False),
             dict(prompt="1+2=", got="3", correct=True, trace_valid=True),
             dict(prompt="1+2*3=", got="1+6=8", correct=False, trace_valid=False)]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    assert mod.error_table(path, t).to_dict() == {"- neg work": 1, "+ 1:1": 1}


def test_old_option_names_in_run_records_and_set():
    """The workbench's own readers: config.json as runs wrote it before the rename, and --set."""
    from experiments.runspec import apply_overrides, from_dict, to_jsonable

    record = {k: v for k, v in to_jsonable(CalculatorConfig(cot="full")).items() if k != "division_digit_order"}
    record["division_digits"] = "plain"
    assert from_dict(CalculatorConfig, record, "task") == CalculatorConfig(cot="full", division_digit_order="plain")
    assert apply_overrides(CalculatorConfig(), {"division_digits": "plain"}, "task").division_digit_order == "plain"


@settings(max_examples=50, deadline=None)
@given(weights=st.lists(st.integers(0, 9), min_size=1, max_size=6).filter(any), size=st.sampled_from([None, 1, 3]),
       seed=st.integers(0, 2**32))
def test_weighted_draws_are_numpys_choice_draw_for_draw(weights, size, seed):
    """The sampler draws weighted indices from a cdf made once (tasks/calculator.py: _draw); they
    are rng.choice's, draw for draw, so weighted data is what it was before the speed-up."""
    odds = np.array(weights, float) / sum(weights)
    mine, numpy = np.random.default_rng(seed), np.random.default_rng(seed)
    for _ in range(20):
        got, want = _draw(mine, len(weights), _cdf(odds), size), numpy.choice(len(weights), size=size, p=odds)
        assert np.array_equal(got, want)
    assert mine.random() == numpy.random()  # and the stream goes on in step
