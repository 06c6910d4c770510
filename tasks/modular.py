"""Modular arithmetic a∘b mod p on a finite training set: the grokking setup.

Worked example (p=97, op="/"):

    "12/45="  ->  "52$"        since 52 * 45 = 12 (mod 97)

Power et al. 2022 train on a fraction of all p^2 (a, b) pairs (division mod 97,
50%) and watch held-out accuracy jump long after training accuracy saturates.
Here `train_fraction` of the pairs, chosen by salted hash, are training data
and the rest is the test split, so the training set is finite by construction.

`tokens=digits` (the default) writes residues in decimal, so the model must also
learn to read and write numbers.  `tokens=symbols` gives each residue one token
of its own, as Power et al. do: residue i is the character chr(0x4E00 + i)
(CJK ideographs: printable, and far from the digits), so "12/45=" becomes
"丌/中=" and the answer 52 is the one token "临".  The grokking preset uses symbols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import Problems, Task, TaskConfig
from tasks.encode import Rendered, render_strings

OPS = ("+", "-", "*", "/")
TOKENS = ("digits", "symbols")
SYMBOL_BASE = 0x4E00  # residue i <-> chr(SYMBOL_BASE + i) under tokens=symbols


def is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


@dataclass(frozen=True)
class ModularConfig(TaskConfig):
    p: int = 97
    op: str = "/"
    train_fraction: float = 0.5
    tokens: str = "digits"  # digits | symbols (one token per residue)

    def __post_init__(self) -> None:
        if not 2 <= self.p <= 10_000:
            raise ValueError(f"p must be in [2, 10000], got {self.p}")
        if self.op not in OPS:
            raise ValueError(f"op must be one of {' '.join(OPS)}, got {self.op!r}")
        if self.op == "/" and not is_prime(self.p):
            raise ValueError(f"division mod p needs a prime p; {self.p} is not")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.tokens not in TOKENS:
            raise ValueError(f"tokens must be digits or symbols, got {self.tokens!r}")


class ModularTask(Task):
    name: ClassVar[str] = "modular"
    description: ClassVar[str] = "a∘b mod p on a finite training fraction (grokking)"
    Config: ClassVar[type[TaskConfig]] = ModularConfig
    key_columns: ClassVar[tuple[str, ...]] = ("a", "b")
    finite_train: ClassVar[bool] = True  # train_acc is logged next to val_acc

    def __init__(self, config: ModularConfig | None = None):
        super().__init__(config)
        self.test_fraction = 1.0 - self.config.train_fraction  # the held-out pairs

    @property
    def chars(self) -> str:
        if self.config.tokens == "symbols":
            return "".join(self.symbol(i) for i in range(self.config.p)) + "=" + self.config.op
        return "0123456789=" + self.config.op

    def symbol(self, residue: int) -> str:
        """How a residue is written: decimal digits, or its own token."""
        return chr(SYMBOL_BASE + residue) if self.config.tokens == "symbols" else str(residue)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        p = self.config.p
        low_b = 1 if self.config.op == "/" else 0
        return Problems(a=rng.integers(0, p, size=n), b=rng.integers(low_b, p, size=n))

    def max_length(self, splits=("train",)) -> int:
        d = len(self.symbol(self.config.p - 1))
        return 3 * d + 3

    def render(self, pr: Problems) -> Rendered:
        c = self.config
        pairs = list(zip(pr["a"].tolist(), pr["b"].tolist()))
        w = self.symbol
        return render_strings([f"{w(a)}{c.op}{w(b)}=" for a, b in pairs], [w(self._apply(a, b)) for a, b in pairs])

    def _apply(self, a: int, b: int) -> int:
        p, op = self.config.p, self.config.op
        if op == "+":
            return (a + b) % p
        if op == "-":
            return (a - b) % p
        if op == "*":
            return a * b % p
        return a * pow(b, -1, p) % p

    def solve(self, pr: Problems) -> list[int]:
        # independent of _apply: division via Fermat's little theorem, the rest by search
        p, op = self.config.p, self.config.op
        out = []
        for a, b in zip(pr["a"].tolist(), pr["b"].tolist()):
            if op == "/":
                out.append(a * pow(b, p - 2, p) % p)
            else:
                exact = {"+": a + b, "-": a - b, "*": a * b}[op]
                out.append(next(c for c in range(p) if (exact - c) % p == 0))
        return out

    def parse_answer(self, text: str) -> int | None:
        if self.config.tokens == "symbols":
            r = ord(text) - SYMBOL_BASE if len(text) == 1 else -1
            return r if 0 <= r < self.config.p else None
        return int(text) if text.isdigit() and text.isascii() else None
