"""Rewards for reinforcement learning: a task's exact-match score as a TRL reward function.

`reward_fn(task)` returns `reward(prompts, completions, **kwargs) -> list[float]`, the shape
TRL's GRPOTrainer calls its `reward_funcs` with: 1.0 where the completion's answer is the
exact answer, 0.0 otherwise.

    >>> from tasks.multiplication import MultiplicationTask
    >>> reward = reward_fn(MultiplicationTask())          # format=scratchpad: "12*34=" -> "84+063=804$"
    >>> reward(["12*34="] * 4, ["84+063=804$", "84+063=804$ junk", "84+063=805", "84+063"])
    [1.0, 1.0, 0.0, 0.0]
    >>> reward_fn(MultiplicationTask(), partial_credit=True)(["12*34="] * 3, ["84+063=805", "84+063", "x"])
    [0.5, 0.5, 0.0]

The expected answer of a row comes from, in this order:

1. the `answer` keyword: TRL passes every dataset column but `prompt` as a keyword list, and a
   dataset from `workbench export task` has an `answer` column (str(task.solve(...)) per row).
   When it is there it is the truth; the prompts are not read for answers.
2. the prompt: `task.problems_from_prompts(prompts)`, then `task.solve`.  A prompt is read only
   if rendering what was read gives that very prompt back, so a prompt that this task (with
   this config) would not have written is an error, not a silently wrong answer: addition with
   reverse_operands=True would read "321+54=" as 321+54.

Neither available is a ValueError that says to pass `answer`.  Of the built-in tasks, addition,
multiplication and calculator read their prompts; copy, reverse, sort, parity and modular need
the `answer` column.  A task scored by its loss (text, shakespeare) has no answers: reward_fn
refuses it.

A completion is scored as `workbench eval` scores it: cut at the first END ("$"), the rest
ignored, then `task.parse_answer`; its answer matches when it equals the expected one or has
the same str() (an `answer` column holds strings, parse_answer may give an int).  A completion
may be a string or a chat message list (its last message's content).  Whatever the model
wrote, the reward is a float in [0, 1]: a completion that does not parse scores 0.0, never
raises.  A malformed dataset (prompts the task cannot read, columns of the wrong length) raises
ValueError: that is a setup error to fix, not a bad completion to punish.

Partial credit (`partial_credit=True`), for tasks whose completions carry a checked trace
(`task.has_trace`; others get the plain 0/1): an exact answer still scores 1.0; otherwise the
score is the share of the trace's steps written correctly *before its first mistake*:

    steps        the completion split into steps as tasks/expr.py writes them (split_trace:
                 separated by "=", digit-level work in brackets belongs to its step); n of them
    first wrong  the smallest K among `task.trace_errors` lines that start "step K"
    score        (K - 1) / n                     a step is wrong: the steps before it count
                 n / (n + 1)                     no step is wrong, but the answer is missing
                                                 (the checker says "trace stops at ...") or wrong
                 0.0                             the trace does not split, or the checker
                                                 reports a mistake that names no step

Steps after the first mistake earn nothing, even if each follows from the wrong one before it:
otherwise a trace could pad a mistake with easy steps (write a long sum of ones, then reduce
it) and score near 1.  Every score of a completion whose answer is not exact is below 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tasks.base import STEP_MESSAGE as _STEP
from tasks.base import UNFINISHED_MESSAGE as _UNFINISHED
from tasks.base import Task
from tasks.encode import END
from tasks.expr import split_trace

ANSWER_COLUMN = "answer"  # the keyword (dataset column) that carries expected answers

Reward = Callable[..., list[float]]


def reward_fn(task: Task, partial_credit: bool = False) -> Reward:
    """A TRL reward function for the task: reward(prompts, completions, **kwargs) -> list[float].

    See the module docstring for where answers come from and what partial credit is.

        >>> from tasks.addition import AdditionTask
        >>> reward = reward_fn(AdditionTask())                 # "123+45=" -> "861$" (168 reversed)
        >>> reward(["123+45=", "123+45="], ["861$", "168$"])
        [1.0, 0.0]
        >>> reward(["123+45="], ["861"], answer=["168"])      # an exported dataset's answer column
        [1.0]
        >>> reward.__name__                                    # what TRL logs the reward as
        'addition_reward'
    """
    if task.metric != "accuracy":
        raise ValueError(f"task {task.name!r} is scored by its {task.metric} (metric {task.metric!r}): "
                         "it has no answers to reward; reward_fn needs a task with metric 'accuracy'")

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        texts = [message_text(p) for p in prompts]
        if any(t is None for t in texts):
            bad = next(p for p, t in zip(prompts, texts) if t is None)
            raise ValueError(f"a prompt is neither a string nor a chat message list: {bad!r}")
        if len(completions) != len(texts):
            raise ValueError(f"{len(completions)} completions for {len(texts)} prompts")
        expected = expected_answers(task, texts, kwargs.get(ANSWER_COLUMN))
        return [score(task, p, message_text(c), e, partial_credit)
                for p, c, e in zip(texts, completions, expected)]

    reward.__name__ = f"{task.name}_reward" + ("_partial" if partial_credit else "")
    return reward


def message_text(x: Any) -> str | None:
    """A prompt or completion as text: a string as is, a chat message list as its last
    message's content (TRL's conversational format); None for anything else.

        >>> message_text([{"role": "user", "content": "12*34="}, {"role": "assistant", "content": "804$"}])
        '804$'
    """
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        x = [x]
    if isinstance(x, (list, tuple)) and x and isinstance(x[-1], dict) and isinstance(x[-1].get("content"), str):
        return x[-1]["content"]
    return None


def expected_answers(task: Task, prompts: list[str], answers: Sequence[Any] | None = None) -> list[Any]:
    """The expected answer of each prompt: `answers` when given, else read from the prompts.

    ValueError when neither works, saying what to pass.

        >>> from tasks.multiplication import MultiplicationTask
        >>> expected_answers(MultiplicationTask(), ["12*34=", "7*8="])
        [408, 56]
    """
    if answers is not None:
        answers = list(answers)
        if len(answers) != len(prompts):
            raise ValueError(f"the {ANSWER_COLUMN!r} column has {len(answers)} values for {len(prompts)} prompts")
        if any(a is None for a in answers):
            raise ValueError(f"the {ANSWER_COLUMN!r} column has a missing value (row {answers.index(None)})")
        return answers
    unique = list(dict.fromkeys(prompts))  # TRL repeats each prompt once per generation
    how = (f"pass the expected answers as an {ANSWER_COLUMN!r} column: reward(prompts, completions, "
           f"{ANSWER_COLUMN}=[...]); a dataset from `workbench export task` has one")
    try:
        problems = task.problems_from_prompts(unique)
    except NotImplementedError:
        raise ValueError(f"task {task.name!r} cannot read answers from its prompts "
                         f"(it has no problems_from_prompts); {how}") from None
    except ValueError as e:
        raise ValueError(f"task {task.name!r} cannot read a prompt: {e}; {how}") from None
    rendered = task.render(problems)
    for i, p in enumerate(unique):
        # what was read must be what was asked: otherwise the answer would be to another problem
        if rendered.prompt(i) != p:
            raise ValueError(f"task {task.name!r} reads the prompt {p!r} as the problem it would write "
                             f"{rendered.prompt(i)!r}: the prompt is not in this task config's format; "
                             f"use the config the dataset was made with, or {how}")
    solved = dict(zip(unique, task.solve(problems)))
    return [solved[p] for p in prompts]


def score(task: Task, prompt: str, completion: str | None, expected: Any, partial_credit: bool = False) -> float:
    """One completion's reward: 1.0 for the exact answer, else 0.0 or (partial_credit) the
    trace's credit.  The completion is cut at END first; None (unreadable) scores 0.0.

        >>> from tasks.calculator import CalculatorTask            # "12+7*3-5=" -> "21+12-5=33-5=82"
        >>> score(CalculatorTask(), "12+7*3-5=", "21+12-5=33-5=82$", 28)
        1.0
        >>> score(CalculatorTask(), "12+7*3-5=", "21+12-5=33-5=92$", 28, partial_credit=True)
        0.6666666666666666
    """
    if completion is None:
        return 0.0
    completion = completion.split(END, 1)[0]  # what follows END was never part of the answer
    try:
        got = task.parse_answer(completion)
    except Exception:  # a task's parser may raise on text it never expected; that is a wrong answer
        return 0.0
    if same_answer(got, expected):
        return 1.0
    if not (partial_credit and task.has_trace):
        return 0.0
    return trace_credit(task, prompt, completion)


def same_answer(got: Any, expected: Any) -> bool:
    """parse_answer's result against an expected answer, which may be stored as its str().

        >>> same_answer(408, "408"), same_answer(408, 408), same_answer(None, "None"), same_answer("0408", 408)
        (True, True, False, False)
    """
    if got is None:  # parse_answer's "does not parse", never an answer
        return False
    try:
        if bool(got == expected):
            return True
    except (TypeError, ValueError):  # e.g. arrays, whose == has no single truth value
        pass
    return str(got) == str(expected)


def trace_credit(task: Task, prompt: str, completion: str) -> float:
    """The share of a trace's steps that are right before its first mistake (module docstring),
    for a completion (END already cut) whose answer is not exact.

        >>> from tasks.multiplication import MultiplicationTask   # "12*34=" -> "84+063=804"
        >>> [trace_credit(MultiplicationTask(), "12*34=", c) for c in ("84+063=805", "84+073=814", "84+063")]
        [0.5, 0.0, 0.5]
    """
    try:
        n = len(split_trace(completion))
        errors = task.trace_errors(prompt, completion)
    except Exception:  # a trace that does not split (ExprError), or a checker that cannot read it
        return 0.0
    named = [int(m.group(1)) for e in errors if (m := _STEP.match(e))]
    first = min(named, default=n + 1)
    if first <= n:
        return (first - 1) / n
    if any(not (_STEP.match(e) or _UNFINISHED.match(e)) for e in errors):
        return 0.0  # wrong as a whole (it does not parse), or in a way the checker names no step for
    return n / (n + 1)  # every step written is right, but the trace ends before its answer
