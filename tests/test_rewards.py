"""tasks/rewards.py: TRL-shaped rewards, checked against answers computed here independently."""

from __future__ import annotations

import doctest
import operator
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tasks.rewards
from helpers import ROOT
from tasks import BUILTIN, get_task_class
from tasks.base import Problems, Task, TaskConfig
from tasks.calculator import CalculatorConfig, CalculatorTask
from tasks.encode import END, render_strings
from tasks.expr import split_trace
from tasks.multiplication import MultiplicationConfig, MultiplicationTask
from tasks.rewards import reward_fn, trace_credit
from tasks.text import TextConfig, TextTask

LOSS_TASKS = {"text", "shakespeare"}
READS_PROMPTS = {"addition", "calculator", "multiplication"}  # the built-ins with problems_from_prompts
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
EXAMPLES = settings(max_examples=8, deadline=None)

# every built-in accuracy task, default config and a few others that change what is written
CONFIGS = [(name, {}) for name in sorted(BUILTIN) if name not in LOSS_TASKS] + [
    ("addition", {"reverse_answer": False, "zero_pad": True}),
    ("addition", {"delimiters": True}),
    ("addition", {"reverse_operands": True}),
    ("calculator", {"cot": "none"}),
    ("calculator", {"cot": "full", "reverse_numbers": False}),
    ("calculator", {"precedence": "left", "division": "floor", "parens": 0.5}),
    ("multiplication", {"format": "plain"}),
    ("multiplication", {"format": "reversed"}),
    ("modular", {"tokens": "symbols", "op": "-"}),
]


def make(name: str, options: dict) -> Task:
    cls = get_task_class(name)
    return cls(cls.Config(**options))


def python_answers(name: str, task: Task, p: Problems) -> list | None:
    """The answers by Python arithmetic on the problems' columns, not by the task's code."""
    if name == "addition":
        num = lambda row: int("".join(map(str, row[::-1].tolist())))  # little-endian digits
        return [num(a) + num(b) for a, b in zip(p["a"], p["b"])]
    if name == "multiplication":
        return [int(a) * int(b) for a, b in zip(p["a"].tolist(), p["b"].tolist())]
    if name == "calculator":
        return [python_value(e, task.config) for e in p["expr"]]
    return None


def python_value(expr: str, c: CalculatorConfig) -> int:
    if c.precedence == "left":  # a pocket calculator: each operation as it comes, groups first
        toks = re.findall(r"\d+|[-+*/()]", expr)

        def run(i: int) -> tuple[int, int]:
            acc, op = None, None
            while i < len(toks) and toks[i] != ")":
                t = toks[i]
                if t in "+-*/" and acc is not None and op is None:
                    op = t
                else:
                    v, i = run(i + 1) if t == "(" else (int(t), i)
                    acc = v if acc is None else OPS[op](acc, v)
                    op = None
                i += 1
            return acc, i
        return run(0)[0]
    v = eval(re.sub(r"(\d+)", r"Fraction(\1)", expr), {"Fraction": Fraction})  # exact: whole numbers only
    assert v.denominator == 1
    return int(v)


def corrupt(text: str, task: Task) -> str:
    """The text with its last letter or digit (in the answer) changed to another of its kind."""
    i = max(j for j, ch in enumerate(text) if ch.isalnum())
    ch = text[i]
    pool = "0123456789" if ch.isdigit() else [c for c in task.chars if c.isalnum() and not c.isdigit()]
    return text[:i] + pool[(pool.index(ch) + 1) % len(pool)] + text[i + 1:]


def draw(task: Task, seed: int, n: int = 12) -> tuple[Problems, list[str], list[str]]:
    p = task.problems(np.random.default_rng(seed), n, "test")
    r = task.render(p)
    return p, [r.prompt(i) for i in range(n)], [r.target(i) for i in range(n)]


@pytest.mark.parametrize("name,options", CONFIGS, ids=lambda x: x if isinstance(x, str) else
                         ",".join(f"{k}={v}" for k, v in x.items()) or "default")
@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1))
def test_exact_answers_score_one_and_a_changed_digit_zero(name, options, seed):
    task = make(name, options)
    p, prompts, targets = draw(task, seed)
    solved = task.solve(p)
    reference = python_answers(name, task, p)
    if reference is not None:
        assert solved == reference
    answers = [str(a) for a in (reference or solved)]  # as `workbench export task` writes them: strings
    right = [t + END + "junk after the end" for t in targets]
    wrong = [corrupt(t, task) for t in targets]
    assert all(task.parse_answer(w) != a for w, a in zip(wrong, solved))

    for partial in (False, True):
        reward = reward_fn(task, partial_credit=partial)
        assert reward(prompts, right, answer=answers) == [1.0] * len(prompts)
        assert reward(prompts, [t + END for t in targets], answer=solved) == [1.0] * len(prompts)  # not strings
        got = reward(prompts, wrong, answer=answers)
        if partial and task.has_trace:
            assert all(0.0 <= g < 1.0 for g in got)
        else:
            assert got == [0.0] * len(prompts)

    reads = name in READS_PROMPTS and not options.get("delimiters") and not options.get("reverse_operands")
    if reads:  # no answer column: the answers come from the prompts, and agree
        assert reward_fn(task)(prompts, right) == [1.0] * len(prompts)
        assert reward_fn(task)(prompts, wrong) == [0.0] * len(prompts)
    else:
        with pytest.raises(ValueError, match="'answer' column"):
            reward_fn(task)(prompts, right)


def test_which_built_in_tasks_read_their_prompts():
    reads = set()
    for name in sorted(set(BUILTIN) - LOSS_TASKS):
        task = make(name, {})
        _, prompts, targets = draw(task, 0, 3)
        try:
            reward_fn(task)(prompts, targets)
            reads.add(name)
        except ValueError as e:
            assert "no problems_from_prompts" in str(e) and "answer=[...]" in str(e)
    assert reads == READS_PROMPTS


def test_a_prompt_in_another_format_is_an_error_not_a_wrong_answer():
    # reverse_operands writes 123+45 as "321+54="; reading that as 321+54 would reward the wrong sum
    task = make("addition", {"reverse_operands": True})
    with pytest.raises(ValueError, match="not in this task config's format"):
        reward_fn(task)(["321+54="], ["861"])
    assert reward_fn(task)(["321+54="], ["861"], answer=["168"]) == [1.0]
    with pytest.raises(ValueError, match="cannot read a prompt"):
        reward_fn(make("calculator", {}))(["12+/3="], ["51"])


def test_the_answer_column_wins_and_must_fit():
    reward = reward_fn(MultiplicationTask(MultiplicationConfig(format="plain")))
    assert reward(["12*34="], ["408"]) == [1.0]
    assert reward(["12*34="], ["408"], answer=["409"]) == [0.0]  # the dataset's answer is the truth
    with pytest.raises(ValueError, match="2 values for 1 prompts"):
        reward(["12*34="], ["408"], answer=["408", "408"])
    with pytest.raises(ValueError, match="missing value"):
        reward(["12*34="], ["408"], answer=[None])
    with pytest.raises(ValueError, match="2 completions for 1 prompts"):
        reward(["12*34="], ["408", "408"])
    # TRL's other keywords are ignored; each prompt repeated per generation is read once
    assert reward(["12*34="] * 3, ["408", "408$x", "804"], completion_ids=[[1], [2], [3]],
                  trainer_state=None, a_digits=[2] * 3) == [1.0, 1.0, 0.0]


def test_chat_messages_and_malformed_completions():
    reward = reward_fn(CalculatorTask(), partial_credit=True)
    chat = [{"role": "user", "content": "12+7*3-5="}]
    assert reward([chat, chat], [[{"role": "assistant", "content": "21+12-5=33-5=82$"}],
                                 [{"role": "assistant", "content": "28"}]]) == [1.0, 0.0]
    junk = [None, 42, [], [{"role": "assistant"}], "", END, "$$", "=", "[", "]=", "(((", "-", "82" * 600,
            "21+12-5=" * 300 + "82", "٨٢", "9" * 2000]
    got = reward(["12+7*3-5="] * len(junk), junk)
    assert all(isinstance(g, float) and 0.0 <= g <= 1.0 for g in got)
    assert got[0:4] == [0.0] * 4
    with pytest.raises(ValueError, match="neither a string nor a chat"):
        reward([42], ["82"])


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="0123456789+-*/()=[],r$x", max_size=40),
       cfg=st.sampled_from([CalculatorConfig(), CalculatorConfig(cot="full"), CalculatorConfig(cot="none")]))
def test_any_text_scores_in_the_unit_interval(text, cfg):
    got, = reward_fn(CalculatorTask(cfg), partial_credit=True)(["12+7*3-5="], [text])
    assert 0.0 <= got <= 1.0
    assert (got == 1.0) == (CalculatorTask(cfg).parse_answer(text.split(END)[0]) == 28)


# ---- partial credit -------------------------------------------------------------------------------

def join(steps: list[tuple[list[str] | None, str]]) -> str:
    """split_trace's steps written back as a trace."""
    return "=".join(("[" + ",".join(w) + "]" if w else "") + e for w, e in steps)


TRACE_TASKS = [CalculatorTask(CalculatorConfig(cot="steps", min_ops=2)),
               CalculatorTask(CalculatorConfig(cot="full", min_ops=2, max_digits=3)),
               MultiplicationTask(MultiplicationConfig(format="scratchpad", min_digits=2, max_digits=4))]


@pytest.mark.parametrize("task", TRACE_TASKS, ids=["calculator-steps", "calculator-full", "multiplication"])
@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_partial_credit_counts_the_steps_before_the_first_mistake(task, seed, data):
    exact, partial = reward_fn(task), reward_fn(task, partial_credit=True)
    _, prompts, targets = draw(task, seed, 40)
    checked = 0
    for prompt, target in zip(prompts, targets):
        steps = split_trace(target)
        n = len(steps)
        assert join(steps) == target and partial([prompt], [target + END]) == [1.0]
        if n < 2:
            continue
        # one wrong step k >= 2 (the answer, or one before it): the k - 1 steps before it count
        k = data.draw(st.integers(2, n), label="wrong step")
        w, e = steps[k - 1]
        wrong = join(steps[: k - 1] + [(w, corrupt(e, task))] + steps[k:])
        if exact([prompt], [wrong]) == [1.0]:
            continue  # a wrong step before a right answer: the answer is what is rewarded
        credit, = partial([prompt], [wrong])
        assert credit == (k - 1) / n and 0.0 < credit < 1.0
        # stopping after k - 1 right steps: all of them count, and the answer is missing
        assert partial([prompt], [join(steps[: k - 1])]) == [(k - 1) / k]
        # padding after a mistake earns nothing more: it only adds steps to the count
        assert partial([prompt], [wrong + "=1+1+1+1"])[0] < credit
        # the first step wrong: nothing counts (whatever the answer, which an exact answer overrules)
        w, e = steps[0]
        assert trace_credit(task, prompt, join([(w, corrupt(e, task))] + steps[1:])) == 0.0
        checked += 1
    assert checked >= 5


def test_partial_credit_worked_examples():
    calc, mul = CalculatorTask(), MultiplicationTask()
    prompt = "12+7*3-5="  # 21+12-5=33-5=82, numbers reversed: 12+21-5 = 33-5 = 28
    assert trace_credit(calc, prompt, "21+12-5=43-5=92") == 1 / 3  # step 2 is wrong
    assert trace_credit(calc, prompt, "21+12-5=33-5=92") == 2 / 3  # the answer is wrong
    assert trace_credit(calc, prompt, "21+12-5=33-5") == 2 / 3  # stops before the answer
    assert trace_credit(calc, prompt, "21+12-5") == 1 / 2
    assert trace_credit(calc, prompt, "21+12-5=43-5=1+1+1+1+1+1=1+1+1+1+2") == 1 / 4
    assert trace_credit(calc, prompt, "[21+12-5=33-5") == 0.0  # does not split
    assert trace_credit(mul, "12*34=", "84+063=805") == 1 / 2
    assert trace_credit(mul, "12*34=", "84+073=814") == 0.0  # the partial products are wrong
    assert trace_credit(mul, "12*34=", "x=804") == 0.0  # the partial products do not parse
    # a right answer after a wrong step is still the exact answer
    assert reward_fn(calc, partial_credit=True)([prompt], ["21+12-5=43-5=82"]) == [1.0]


def test_without_a_trace_partial_credit_is_the_plain_score():
    for task in (make("addition", {}), MultiplicationTask(MultiplicationConfig(format="plain")),
                 CalculatorTask(CalculatorConfig(cot="none"))):
        _, prompts, targets = draw(task, 3)
        wrong = [corrupt(t, task) for t in targets]
        assert reward_fn(task, partial_credit=True)(prompts * 2, targets + wrong) == [1.0] * 12 + [0.0] * 12


# ---- a task from outside: a plugin, and a text task -------------------------------------------------

@dataclass(frozen=True)
class DigitSumConfig(TaskConfig):
    max_len: int = 5


class DigitSum(Task):
    """The guide's task, as a plugin would define it: "4071=" -> "12$"."""

    name = "digit_sum_rewards"
    Config = DigitSumConfig
    chars = "0123456789="
    key_columns = ("digits", "length")

    def sample(self, rng, n, split):
        length = rng.integers(1, self.config.max_len + 1, size=n)
        digits = rng.integers(0, 10, size=(n, self.config.max_len))
        digits[np.arange(self.config.max_len)[None, :] >= length[:, None]] = 0
        return Problems(digits=digits, length=length)

    def render(self, p):
        s = ["".join(map(str, row[:k])) for row, k in zip(p["digits"].tolist(), p["length"].tolist())]
        return render_strings([x + "=" for x in s], [str(sum(map(int, x))) for x in s])

    def solve(self, p):
        return [int(row.sum()) for row in p["digits"]]

    def parse_answer(self, text):
        return int(text) if text.isdigit() and text.isascii() else None


class DigitSumReading(DigitSum):
    name = "digit_sum_rewards_reading"

    def problems_from_prompts(self, prompts):
        texts = [s.removesuffix("=") for s in prompts]
        if not all(t.isdigit() and t.isascii() for t in texts):
            raise ValueError(f"expected digits, got {prompts}")
        digits = np.array([[int(c) for c in t.ljust(self.config.max_len, "0")] for t in texts])
        return Problems(digits=digits, length=np.array([len(t) for t in texts]))


@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1))
def test_a_plugin_task(seed):
    for task in (DigitSum(), DigitSumReading()):
        p, prompts, targets = draw(task, seed)
        sums = [sum(int(c) for c in prompt[:-1]) for prompt in prompts]  # the digits of the prompt itself
        assert task.solve(p) == sums
        wrong = [str(s + 1) for s in sums]
        reward = reward_fn(task, partial_credit=True)
        assert reward(prompts * 2, targets + wrong, answer=[str(s) for s in sums] * 2) == [1.0] * 12 + [0.0] * 12
        if isinstance(task, DigitSumReading):
            assert reward(prompts * 2, targets + wrong) == [1.0] * 12 + [0.0] * 12
        else:
            with pytest.raises(ValueError, match="digit_sum_rewards.*answer"):
                reward(prompts, targets)


def test_a_task_scored_by_its_loss_is_refused(tmp_path, shakespeare):
    f = tmp_path / "corpus.txt"
    f.write_text("to be or not to be\n" * 20, encoding="utf-8")
    for task in (TextTask(TextConfig(path=str(f))), get_task_class("shakespeare")(TextConfig(path=str(shakespeare)))):
        with pytest.raises(ValueError, match=r"is scored by its loss .*no answers to reward"):
            reward_fn(task)


# ---- the examples in the docs run --------------------------------------------------------------

def test_docstring_examples():
    assert doctest.testmod(tasks.rewards).failed == 0


def test_the_guides_reward_examples():
    text = (ROOT / "docs" / "adding-a-task.md").read_text(encoding="utf-8")
    section = text[text.index("## 7. Rewards for RL"):]
    section = re.sub(r"(?m)^```\w*$", "", section)  # a fence would read as expected output
    test = doctest.DocTestParser().get_doctest(section, {}, "guide", "adding-a-task.md", 0)
    assert test.examples
    assert doctest.DocTestRunner().run(test).failed == 0
