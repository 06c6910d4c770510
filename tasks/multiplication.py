"""Multiplication a*b of non-negative integers, with an optional scratchpad.

Worked example, a=12, b=34 (408):

    format=plain       "12*34="  ->  "408$"
    format=reversed    "12*34="  ->  "804$"
    format=scratchpad  "12*34="  ->  "84+063=804$"

The scratchpad, in the spirit of Lee et al. 2023's detailed scratchpad, writes
the partial product a * (digit i of b) * 10^i for each digit of b, least
significant first, joined by "+", then adds them up one at a time: each "="
is one addition, so the running sum is always visible.  Numbers in it are
reversed (least-significant digit first), as the order a carry-propagating
adder produces them:  12*4=48 -> "84", 12*30=360 -> "063", 48+360=408 -> "804".
For 123*456:  "837+0516+00294=8886+00294=88065".  A 1-digit b has one partial
product, which is the answer.

a has min_digits..max_digits digits, b has b_min_digits..b_max_digits (0: as
a); the digit counts are uniform, then the values uniform.  Held out: 5% of
(a, b) pairs by salted hash.  The `ood` split gives a max_digits+1 ..
ood_max_digits digits (0: twice max_digits), b as in training: N x 2 length
generalisation is `--set task.b_min_digits=2 --set task.b_max_digits=2`.
a may be longer than int64 holds (a column of Python ints then); b may not.
Buckets: a_digits, b_digits.  Scratchpad traces are checked step by step
(`trace_valid`): the partial products must be the right ones and every
addition one correct reduction (tasks/expr.py).

Position ids (model.pos=coupled|coupled_rel|coupled_local, reversed format, Cho et al. 2024):
a's digits get their significance and the answer counts up from "=" (id 1), as
in addition; b's digits go in fixed slots, b's units in slot -1, its tens in -2,
because every digit of the answer needs all of b:

    chars  1 2 3 * 4 5 = 5 3 5 5 $      123*45 = 5535, reversed
    ids    3 2 1 0 -2 -1 1 2 3 4 5 6

coupled_ids="interleaved" (as in addition, tasks/positions.py): a's digits 2i,
the answer 1, 3, 5, ...: ids 6 4 2 0 -2 -1 1 3 5 7 9 11.

The scratchpad is coupled the same way: each partial product and each sum counts up
from its own "+" or "=" (id 1), so every number of the trace has its digits of
significance i on id i + 1, beside a_i:

    chars  1 2 3 * 4 5 = 5 1 6 + 0 2 9 4 = 5 3 5 5 $
    ids    3 2 1 0 -2 -1 1 2 3 4 1 2 3 4 5 1 2 3 4 5 0

Why N x 2 wants it: a reversed answer's carry into digit i runs up to 17, so the
answer digits already written fix it only modulo 10, and telling 3 from 13 can
need a chain of earlier digits as long as the row; a model of fixed depth gets
that wrong more often the longer the row.  In a partial product (one digit of b)
the carry is at most 8 and in the sum at most 1, both fixed by the digit written
before (docs/LOG.md, 2026-12-01).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import Problems, Task, TaskConfig
from tasks.curriculum import ramp
from tasks.encode import Rendered, render_strings
from tasks.expr import (
    Bin, ExprError, Node, Num, Syntax, partial_products, render_trace, split_trace, trace_errors,
)
from tasks.positions import DIGITS, Scheme, coupling_step, digit_index

FORMATS = ("plain", "reversed", "scratchpad")
_SUM = Syntax("left", reverse=True)  # the scratchpad's sums: left to right, reversed numbers


@dataclass(frozen=True)
class MultiplicationConfig(TaskConfig):
    min_digits: int = 1
    max_digits: int = 2
    b_min_digits: int = 0  # 0: min_digits
    b_max_digits: int = 0  # 0: max_digits
    format: str = "scratchpad"
    mask_prompt: bool = True
    ood_max_digits: int = 0  # the ood split's longest a; 0: 2 * max_digits
    coupled_ids: str = "shared"  # model.pos=coupled*: shared | interleaved (a's digits even ids, answer odd)

    def __post_init__(self) -> None:
        coupling_step(self.coupled_ids)
        for lo, hi, who in ((self.min_digits, self.max_digits, ""), (self.b_lo, self.b_hi, "b_")):
            if lo <= 0 or hi <= 0:
                raise ValueError(f"{who}min_digits and {who}max_digits must be positive, got {lo}, {hi}")
            if lo > hi:
                raise ValueError(f"{who}min_digits ({lo}) is greater than {who}max_digits ({hi})")
        if self.b_hi > 9:
            raise ValueError(f"b of more than 9 digits is not supported, got b_max_digits={self.b_hi}")
        if self.ood_max_digits and self.ood_max_digits <= self.max_digits:
            raise ValueError(f"ood_max_digits ({self.ood_max_digits}) must exceed max_digits ({self.max_digits})")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")

    @property
    def b_lo(self) -> int:
        return self.b_min_digits or self.min_digits

    @property
    def b_hi(self) -> int:
        return self.b_max_digits or self.max_digits

    @property
    def ood_digits(self) -> int:
        return self.ood_max_digits or 2 * self.max_digits


def sum_tree(parts: list[int]) -> Node:
    node: Node = Num(parts[0])
    for p in parts[1:]:
        node = Bin("+", node, Num(p))
    return node


class MultiplicationTask(Task):
    name: ClassVar[str] = "multiplication"
    description: ClassVar[str] = "a*b=c, plain, reversed, or with a partial-product scratchpad"
    Config: ClassVar[type[TaskConfig]] = MultiplicationConfig
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "ood")
    buckets: ClassVar[tuple[str, ...]] = ("a_digits", "b_digits")
    default_by: ClassVar[tuple[str, ...]] = ("a_digits", "b_digits")
    key_columns: ClassVar[tuple[str, ...]] = ("a", "b")
    scores_traces: ClassVar[bool] = True  # trace_valid in every format (without a scratchpad it equals correct)

    @property
    def chars(self) -> str:
        return "0123456789*+="

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        c = self.config
        lo, hi = (c.max_digits + 1, c.ood_digits) if split == "ood" else (c.min_digits, c.max_digits)
        ad = rng.integers(lo, hi + 1, size=n)
        bd = rng.integers(c.b_lo, c.b_hi + 1, size=n)
        return self._problems(_uniform_with_digits(rng, ad), _uniform_with_digits(rng, bd))

    def _problems(self, a: np.ndarray, b: np.ndarray) -> Problems:
        digits = np.vectorize(lambda v: len(str(v)))
        return Problems(a=a, b=b, a_digits=digits(a), b_digits=digits(b))

    def levels(self) -> list[dict]:
        """One more digit of a per level, from 1 (3x3: 1x1, 2x2, 3x3).  b keeps its range when it
        has its own (b_max_digits), else follows a's."""
        c = self.config
        levels = ramp("max_digits", c.max_digits, "min_digits", c.min_digits)
        if c.b_min_digits and not c.b_max_digits:  # b's upper bound follows a's: keep b's range valid
            levels[:-1] = [{**lv, "b_min_digits": min(c.b_min_digits, lv["max_digits"])} for lv in levels[:-1]]
        return levels

    def max_length(self, splits=("train",)) -> int:
        c = self.config
        a, b = 10 ** (c.ood_digits if "ood" in splits else c.max_digits) - 1, 10**c.b_hi - 1
        return len(self._prompt(a, b)) + len(self._target(a, b)) + 1

    def _prompt(self, a: int, b: int) -> str:
        return f"{a}*{b}="

    def _target(self, a: int, b: int) -> str:
        fmt = self.config.format
        if fmt == "plain":
            return str(a * b)
        if fmt == "reversed":
            return str(a * b)[::-1]
        node = sum_tree(partial_products(a, b))
        if isinstance(node, Num):  # a 1-digit b: the one partial product is the answer
            return _SUM.render(node)
        return _SUM.render(node) + "=" + render_trace(node, _SUM, "exact")

    def render(self, p: Problems) -> Rendered:
        pairs = list(zip(p["a"].tolist(), p["b"].tolist()))
        return render_strings([self._prompt(a, b) for a, b in pairs], [self._target(a, b) for a, b in pairs])

    def solve(self, p: Problems) -> list[int]:
        return [int(a) * int(b) for a, b in zip(p["a"].tolist(), p["b"].tolist())]

    def parse_answer(self, text: str) -> int | None:
        last = text.rsplit("=", 1)[-1]
        if not last.isdigit() or not last.isascii():
            return None
        return int(last if self.config.format == "plain" else last[::-1])

    def problems_from_prompts(self, prompts) -> Problems:
        pairs = []
        for text in prompts:
            body = text.strip().removesuffix("=")
            a, sep, b = body.partition("*")
            if not sep or not (a.isdigit() and b.isdigit() and a.isascii() and b.isascii()):
                raise ValueError(f"expected a prompt like '12*34=', got {text!r}")
            if len(b.lstrip("0")) > 9:
                raise ValueError(f"b has at most 9 digits, got {b!r}")
            pairs.append((int(a), int(b)))
        return self._problems(int_column([a for a, _ in pairs]), int_column([b for _, b in pairs]))

    def position_scheme(self, scheme: str) -> Scheme:
        if scheme != "coupled":
            return super().position_scheme(scheme)
        c = self.config
        if c.format == "plain":
            raise ValueError("multiplication's coupled position ids need task.format=reversed or scratchpad")
        step = coupling_step(c.coupled_ids)
        if c.format == "scratchpad" and step != 1:
            raise ValueError("task.coupled_ids=interleaved is for task.format=reversed; the scratchpad's are shared")
        prompt_ids = functools.partial(_coupled_prompt, step=step)
        if c.format == "scratchpad":  # digits count on, and each "+" and "=" begins a new number
            return Scheme(prompt_ids, DIGITS, restart="+=", slots=c.b_hi)
        return Scheme(prompt_ids, self.vocab.chars, slots=c.b_hi, step=step)

    @property
    def has_trace(self) -> bool:
        return self.config.format == "scratchpad"  # plain and reversed write the bare answer

    def trace_errors(self, prompt: str, completion: str) -> list[str]:
        p = self.problems_from_prompts([prompt])
        a, b = int(p["a"][0]), int(p["b"][0])
        if self.config.format != "scratchpad":
            got = self.parse_answer(completion)
            return [] if got == a * b else [f"answer {completion!r} is not {self._target(a, b)!r}"]
        try:
            first = split_trace(completion)[0][1]
            got = _SUM.parse(first)
        except ExprError as e:
            return [f"partial products do not parse: {e}"]
        want = sum_tree(partial_products(a, b))
        errors = []
        if got != want:
            errors.append(f"step 1 {first!r}: partial products should be {_SUM.render(want)!r}")
        rest = completion.split("=", 1)[1] if "=" in completion else ""
        if isinstance(got, Num) and not rest:
            return errors
        if not rest:
            return errors + [f"trace stops at {first!r} before the answer"]
        later = trace_errors(got, rest, _SUM, "exact")  # its step k is our step k+1
        return errors + [re.sub(r"^step (\d+)", lambda m: f"step {int(m.group(1)) + 1}", e) for e in later]



def int_column(values: list[int]) -> np.ndarray:
    """int64 where every value fits, else Python ints (an object column)."""
    if all(0 <= v < 2**63 for v in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=object)


def _coupled_prompt(r: Rendered, step: int = 1) -> np.ndarray:
    """a's digits: their significance (1: units) times the step; b's: slot -significance; "=": 1; "*": 0."""
    sig = digit_index(r.chars, from_right=True)
    in_b = np.cumsum(r.chars == ord("*"), axis=1) > 0
    return np.where(r.chars == ord("="), 1, np.where(in_b, -sig, step * sig))


def _uniform_with_digits(rng: np.random.Generator, k: np.ndarray) -> np.ndarray:
    """Numbers with exactly k[i] digits (0 has one), uniform; past int64's 18 digits, Python ints."""
    if k.max(initial=1) <= 18:
        lo = np.where(k > 1, 10 ** (k - 1), 0)
        return rng.integers(lo, 10**k, dtype=np.int64)
    # digit by digit: a uniform leading digit (1-9, or 0-9 for one digit), then uniform digits
    width = int(k.max())
    d = rng.integers(0, 10, size=(len(k), width))
    lead = rng.integers(1, 10, size=len(k))
    rows = []
    for digits, n, first in zip(d.tolist(), k.tolist(), lead.tolist()):
        head = str(first) if n > 1 else str(digits[0])
        rows.append(int(head + "".join(map(str, digits[1:n]))))
    return int_column(rows)
