"""Addition of non-negative integers, answer digits reversed by default.

Worked example, default format (min_digits=1, max_digits=3):

    a=123, b=45      prompt "123+45="     target "861$"

168 is written least-significant digit first, "861", because that is the
order in which a carry-propagating adder produces digits: each output digit
then depends only on digits the model has already seen.  "$" is the end
token.  With mask_prompt (default) the loss covers only "861$".

Format switches:  reverse_answer (True), reverse_operands (False),
zero_pad (False: pad operands to max_digits and the answer to max_digits+1),
delimiters (False: wrap each number in brackets, "[123]+[45]=[861]"),
index_hints (False: a letter before each digit names its significance, a for
units, b for tens, ..., as in Zhou et al. 2024: "c1b2a3+b4a5=a8b6c1").
hint_start="random" starts a training problem's letters at a random one, the same
for its three numbers ("e1d2c3+d4c5=c8d6e1" is 123+45 from "c"), so that every
letter a longer test number uses is trained, as in the paper; test and ood
problems start at "a".

Position ids (model.pos=coupled, tasks/positions.py): digits of equal
significance share an id, and the answer counts up from "=" (id 1), so the
token that predicts the answer's i-th digit has id i, as a_i and b_i do
(Cho et al. 2024).  It needs the reversed answer, without delimiters or hints.
coupled_ids="interleaved" gives operand digits ids 2i and the answer 1, 3, 5, ...
(step 2), so that no answer digit shares an id with an operand digit: a small
model then tells a_(i-1) + b_(i-1), the carry's source, from the answer's own
digits (tasks/positions.py; 12+345= gets ids 4 2 0 6 4 2 1, then 3 5 7 9).

Sampling: `digits` (default) picks (a_digits, b_digits) evenly over all pairs
in [min_digits, max_digits]^2, then a uniform number of exactly that many
digits (0 counts as a 1-digit number); `uniform` draws a and b uniformly from
[0, 10^max_digits).  The `ood` split uses digit counts in
[max_digits+1, ood_max_digits] for both operands; with ood_sampling="any" it
covers every pair in [min_digits, ood_max_digits]^2 that has at least one
operand longer than max_digits (what a length-generalisation heatmap needs);
with "lengths", a has a digit count uniform in [max_digits+1, ood_max_digits]
and b has the same count in half the problems and one uniform in
[min_digits, ood_max_digits] in the other half (accuracy by length: `--by a_digits`).

carry_weights (uniform sampling only) skews *training* problems towards long
carry chains, the trick behind the smallest trained 10-digit adders: relative
odds of the longest chain of carries, 0..max_digits digits long ("" keeps the
uniform pairs).  A chain of length L starts at a uniform position; digits
inside it carry, digits outside do not, and each column's digit pair is
uniform among the pairs that do what the chain asks.  "0,...,0,1" (every
chain the full length) gives sums like 9999999999+1.  The test and ood
splits stay uniform: accuracy is measured on the task's own distribution.

train_size > 0 fixes a finite training pool of that many distinct problems
(Lee et al. 2023's sample-efficiency sweep); 0 draws fresh problems forever.

Held out: 5% of problems, chosen by a salted hash of (a, b), so about 5% of
every bucket -- including the small ones: 4 of the 100 problems with two 1-digit
operands and 46 of the 900 with digit counts (1, 2) are test-only, and training
never draws them.

Numbers are little-endian digit matrices, so any length works and rendering
is vectorised.  Buckets: a_digits, b_digits, carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import Problems, Task, TaskConfig, parse_odds
from tasks.curriculum import ramp
from tasks.encode import Rendered, field_const, field_digits, render_fields
from tasks.positions import Scheme, coupling_step, digit_index

HINTS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # index hints: HINTS[i] marks significance i + 1
OOD_SAMPLING = ("both", "any", "lengths")


@dataclass(frozen=True)
class AdditionConfig(TaskConfig):
    min_digits: int = 1
    max_digits: int = 3
    reverse_answer: bool = True
    reverse_operands: bool = False
    zero_pad: bool = False
    delimiters: bool = False
    mask_prompt: bool = True
    sampling: str = "digits"  # digits | uniform
    ood_max_digits: int = 0  # 0: 2 * max_digits
    ood_sampling: str = "both"  # both: both operands longer than max_digits | any: at least one | lengths
    train_size: int = 0  # > 0: train on a fixed pool of this many problems
    index_hints: bool = False  # a letter before each digit names its significance
    carry_weights: str = ""  # training odds of the longest carry chain, 0..max_digits long; "": uniform pairs
    coupled_ids: str = "shared"  # model.pos=coupled*: shared | interleaved (operands even ids, answer odd)
    hint_start: str = "a"  # index_hints: a | random (a training problem's hints start at a random letter)

    def __post_init__(self) -> None:
        if self.min_digits <= 0 or self.max_digits <= 0:
            raise ValueError(f"digits must be positive, got min_digits={self.min_digits}, max_digits={self.max_digits}")
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits ({self.min_digits}) is greater than max_digits ({self.max_digits})")
        if self.sampling not in ("digits", "uniform"):
            raise ValueError(f"sampling must be 'digits' or 'uniform', got {self.sampling!r}")
        if self.ood_sampling not in OOD_SAMPLING:
            raise ValueError(f"ood_sampling must be one of {', '.join(OOD_SAMPLING)}, got {self.ood_sampling!r}")
        if self.train_size < 0:
            raise ValueError(f"train_size must be >= 0 (0: unlimited), got {self.train_size}")
        if self.ood_max_digits and self.ood_max_digits <= self.max_digits:
            raise ValueError(f"ood_max_digits ({self.ood_max_digits}) must exceed max_digits ({self.max_digits})")
        if self.index_hints and self.ood_digits + 1 > len(HINTS):
            raise ValueError(f"index_hints has {len(HINTS)} letters, so numbers of at most {len(HINTS) - 1} digits; "
                             f"ood_max_digits is {self.ood_digits}")
        if self.index_hints and self.delimiters:
            raise ValueError("index_hints and delimiters do not combine; choose one")
        if self.hint_start not in ("a", "random"):
            raise ValueError(f"hint_start must be 'a' or 'random', got {self.hint_start!r}")
        if self.hint_start == "random" and not self.index_hints:
            raise ValueError("hint_start='random' moves index hints: it needs index_hints=true")
        coupling_step(self.coupled_ids)
        if self.carry_weights and self.sampling != "uniform":
            raise ValueError("carry_weights needs sampling='uniform' (operands of max_digits digits, leading zeros allowed)")
        self.carry_odds()

    def carry_odds(self) -> np.ndarray | None:
        """Probabilities of a longest carry chain of 0..max_digits digits, or None (uniform pairs)."""
        return parse_odds("carry_weights", self.carry_weights, self.max_digits + 1,
                          f"one per chain length 0..{self.max_digits}")

    @property
    def ood_digits(self) -> int:
        return self.ood_max_digits or 2 * self.max_digits


def random_digits(rng: np.random.Generator, count: np.ndarray, width: int) -> np.ndarray:
    """Little-endian digit matrix of numbers with exactly count[i] digits."""
    n = len(count)
    d = rng.integers(0, 10, size=(n, width), dtype=np.int8)
    d[np.arange(width)[None, :] >= count[:, None]] = 0
    lead = rng.integers(1, 10, size=n, dtype=np.int8)
    multi = count > 1
    d[np.flatnonzero(multi), count[multi] - 1] = lead[multi]
    return d


def _pairs_by_carry() -> list[np.ndarray]:
    """The digit pairs (a, b) of each column kind, indexed 2 * carry_in + carry_out."""
    a, b = np.divmod(np.arange(100), 10)
    return [np.stack([a, b], 1)[((a + b + cin) >= 10) == bool(cout)].astype(np.int8)
            for cin in (0, 1) for cout in (0, 1)]


PAIRS_BY_CARRY = _pairs_by_carry()


def carry_chains(rng: np.random.Generator, n: int, width: int, odds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of width-digit numbers whose one chain of carries has a length drawn from odds
    (0..width), at a uniform start; little-endian digit matrices."""
    length = rng.choice(width + 1, size=n, p=odds)
    start = (rng.random(n) * (width - length + 1)).astype(np.int64)
    j = np.arange(width)[None, :]
    cout = (j >= start[:, None]) & (j < (start + length)[:, None])
    cin = np.zeros_like(cout)
    cin[:, 1:] = cout[:, :-1]
    kind = 2 * cin + cout
    u = rng.random((n, width))
    a = np.zeros((n, width), dtype=np.int8)
    b = np.zeros((n, width), dtype=np.int8)
    for k, pairs in enumerate(PAIRS_BY_CARRY):
        m = kind == k
        pick = pairs[(u[m] * len(pairs)).astype(np.int64)]
        a[m], b[m] = pick[:, 0], pick[:, 1]
    return a, b


def _pairs_beyond(rng: np.random.Generator, n: int, lo: int, mid: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """n digit-count pairs uniform over [lo, hi]^2 minus [lo, mid]^2 (rejection sampling)."""
    ad, bd = np.empty(0, np.int64), np.empty(0, np.int64)
    while len(ad) < n:
        a, b = rng.integers(lo, hi + 1, size=2 * n), rng.integers(lo, hi + 1, size=2 * n)
        keep = np.maximum(a, b) > mid
        ad, bd = np.concatenate([ad, a[keep]]), np.concatenate([bd, b[keep]])
    return ad[:n], bd[:n]


def n_digits(d: np.ndarray) -> np.ndarray:
    """Digit count of each row (0 has one digit)."""
    nz = d != 0
    last = d.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
    return np.where(nz.any(axis=1), last + 1, 1)


def add_digits(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise addition with carries: (sum digits (N, D+1), number of carries)."""
    n, w = a.shape
    out = np.zeros((n, w + 1), dtype=np.int8)
    carry = np.zeros(n, dtype=np.int8)
    carries = np.zeros(n, dtype=np.int64)
    for j in range(w):
        s = a[:, j] + b[:, j] + carry
        out[:, j] = s % 10
        carry = s // 10
        carries += carry
    out[:, w] = carry
    return out, carries


def hinted(field: tuple[np.ndarray, np.ndarray], reverse: bool, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A digits field with its index hint before each digit: "123" -> "c1b2a3" (reversed: "a3b2c1");
    start (N,): each row's first letter, 0 for "a" (start 2: "e1d2c3")."""
    chars, count = field
    n, d = chars.shape
    j = np.arange(d)[None, :]
    sig = (j if reverse else count[:, None] - 1 - j) + start[:, None]  # the letter of column j
    hint = np.frombuffer(HINTS.encode(), dtype=np.uint8).astype(np.int64)[np.clip(sig, 0, len(HINTS) - 1)]
    out = np.zeros((n, 2 * d), dtype=np.int64)
    out[:, 0::2] = np.where(j < count[:, None], hint, 0)
    out[:, 1::2] = chars
    return out, 2 * count


def unhint(text: str, reverse: bool) -> str | None:
    """"a8b6c1" -> "861" when the hints are exactly the right ones, else None."""
    letters, digits = text[0::2], text[1::2]
    m = len(digits)
    want = HINTS[:m] if reverse else HINTS[:m][::-1]
    return digits if len(text) == 2 * m and m <= len(HINTS) and letters == want else None


def to_int(d: np.ndarray) -> int:
    return int("".join(map(str, d[::-1].tolist())))


class AdditionTask(Task):
    name: ClassVar[str] = "addition"
    description: ClassVar[str] = "a+b=c, answer digits reversed by default"
    Config: ClassVar[type[TaskConfig]] = AdditionConfig
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "ood")
    buckets: ClassVar[tuple[str, ...]] = ("a_digits", "b_digits", "carries")
    default_by: ClassVar[tuple[str, ...]] = ("a_digits", "b_digits")
    key_columns: ClassVar[tuple[str, ...]] = ("a", "b")

    @property
    def chars(self) -> str:
        c = self.config
        return "0123456789+=" + ("[]" if c.delimiters else "") + (HINTS[: self.hint_letters] if c.index_hints else "")

    @property
    def hint_letters(self) -> int:
        """The letters index hints use: one per significance of the longest answer."""
        return self.config.ood_digits + 1

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        c = self.config
        lo, hi = (c.max_digits + 1, c.ood_digits) if split == "ood" else (c.min_digits, c.max_digits)
        width = hi
        if c.sampling == "uniform" and split == "train" and c.carry_weights:
            return self._problems(*carry_chains(rng, n, width, c.carry_odds()))
        if c.sampling == "uniform" and split != "ood":
            a = rng.integers(0, 10, size=(n, width), dtype=np.int8)
            b = rng.integers(0, 10, size=(n, width), dtype=np.int8)
            return self._problems(a, b)
        if split == "ood" and c.ood_sampling == "any":
            ad, bd = _pairs_beyond(rng, n, c.min_digits, c.max_digits, hi)
        elif split == "ood" and c.ood_sampling == "lengths":
            ad = rng.integers(lo, hi + 1, size=n)
            bd = np.where(rng.random(n) < 0.5, ad, rng.integers(c.min_digits, hi + 1, size=n))
        else:
            ad = rng.integers(lo, hi + 1, size=n)
            bd = rng.integers(lo, hi + 1, size=n)
        p = self._problems(random_digits(rng, ad, width), random_digits(rng, bd, width))
        if split == "train" and c.hint_start == "random":  # any start whose letters the vocabulary has
            p = Problems(**p.columns, hint_start=rng.integers(0, self.hint_letters - p["c_digits"] + 1))
        return p

    def levels(self) -> list[dict]:
        """One more digit per level, from 1-digit operands to the configured max_digits (carry
        weights, one per chain length up to max_digits, only at the last)."""
        levels = ramp("max_digits", self.config.max_digits, "min_digits", self.config.min_digits)
        if self.config.carry_weights:
            levels[:-1] = [{**lv, "carry_weights": ""} for lv in levels[:-1]]
        return levels

    def max_length(self, splits=("train",)) -> int:
        d = self.config.ood_digits if "ood" in splits else self.config.max_digits
        delim = 6 if self.config.delimiters else 0
        digits = 2 * d + (d + 1)
        return digits * (2 if self.config.index_hints else 1) + 3 + delim  # a + b = c $

    def _problems(self, a: np.ndarray, b: np.ndarray) -> Problems:
        s, carries = add_digits(a, b)
        return Problems(a=a, b=b, c=s, a_digits=n_digits(a), b_digits=n_digits(b),
                        c_digits=n_digits(s), carries=carries)

    def render(self, p: Problems) -> Rendered:
        c = self.config
        n = len(p)
        pad = np.full(n, c.max_digits)
        a_len = np.maximum(p["a_digits"], pad) if c.zero_pad else p["a_digits"]
        b_len = np.maximum(p["b_digits"], pad) if c.zero_pad else p["b_digits"]
        c_len = np.maximum(p["c_digits"], pad + 1) if c.zero_pad else p["c_digits"]
        a = field_digits(p["a"], a_len, c.reverse_operands)
        b = field_digits(p["b"], b_len, c.reverse_operands)
        s = field_digits(p["c"], c_len, c.reverse_answer)
        if c.index_hints:
            start = p["hint_start"] if "hint_start" in p else np.zeros(n, dtype=np.int64)
            a, b, s = (hinted(a, c.reverse_operands, start), hinted(b, c.reverse_operands, start),
                       hinted(s, c.reverse_answer, start))
        if c.delimiters:
            lb, rb = field_const("[", n), field_const("]", n)
            return render_fields([lb, a, rb, field_const("+", n), lb, b, rb, field_const("=", n)], [lb, s, rb])
        return render_fields([a, field_const("+", n), b, field_const("=", n)], [s])

    def solve(self, p: Problems) -> list[int]:
        return [to_int(a) + to_int(b) for a, b in zip(p["a"], p["b"])]

    def parse_answer(self, text: str) -> int | None:
        if self.config.delimiters:
            if not (text.startswith("[") and text.endswith("]")):
                return None
            text = text[1:-1]
        if self.config.index_hints:
            text = unhint(text, self.config.reverse_answer)
            if text is None:
                return None
        if not text.isdigit() or not text.isascii():
            return None
        return int(text[::-1] if self.config.reverse_answer else text)

    def position_scheme(self, scheme: str) -> Scheme:
        if scheme != "coupled":
            return super().position_scheme(scheme)
        c = self.config
        if not c.reverse_answer or c.delimiters or c.index_hints:
            raise ValueError("addition's coupled position ids need task.reverse_answer=true, "
                             "task.delimiters=false and task.index_hints=false")
        return Scheme(self._coupled_prompt, self.vocab.chars, step=self._coupled_step)

    @property
    def _coupled_step(self) -> int:
        return coupling_step(self.config.coupled_ids)

    def _coupled_prompt(self, r: Rendered) -> np.ndarray:
        """Operand digits get their significance (1: units), times the step; "=" gets 1; the rest 0."""
        sig = digit_index(r.chars, from_right=not self.config.reverse_operands)
        return np.where(r.chars == ord("="), 1, self._coupled_step * sig)

    def problems_from_prompts(self, prompts) -> Problems:
        """'123+45' or '123+45=' (ordinary notation, whatever this task's format) -> problems."""
        pairs = []
        for text in prompts:
            a, sep, b = text.strip().removesuffix("=").partition("+")
            if not sep or not (a.isdigit() and b.isdigit() and a.isascii() and b.isascii()):
                raise ValueError(f"expected a prompt like '123+45=', got {text!r}")
            pairs.append((int(a), int(b)))
        width = max(max(len(str(v)) for pair in pairs for v in pair), self.config.max_digits)
        digits = [[np.array([int(ch) for ch in str(v)[::-1].ljust(width, "0")], dtype=np.int8) for v in pair]
                  for pair in pairs]
        return self._problems(np.stack([d[0] for d in digits]), np.stack([d[1] for d in digits]))

    # ---- the Python API promised in the README -------------------------------------------
    def prompt(self, a: int, b: int) -> str:
        """The prompt for a + b in this task's format, e.g. prompt(123, 45) == '123+45='."""
        if a < 0 or b < 0:
            raise ValueError("addition operands must be non-negative")
        return self.render(self.problems_from_prompts([f"{a}+{b}"])).prompt(0)
