"""Copy a string: the simplest sequence task (an induction-head check).

Worked example (alphabet "abcdefgh", lengths 1-8):

    "cabd="  ->  "cabd$"

Held out: 5% of strings by salted hash.  Bucket: length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import Problems, Task, TaskConfig
from tasks.curriculum import ramp
from tasks.encode import Rendered, render_strings
from tasks.seq import as_strings, check_lengths, random_sequences


@dataclass(frozen=True)
class CopyConfig(TaskConfig):
    min_len: int = 1
    max_len: int = 8
    alphabet: str = "abcdefgh"

    def __post_init__(self) -> None:
        check_lengths(self.min_len, self.max_len)
        if not self.alphabet.isalpha() or not self.alphabet.isascii() or len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError(f"alphabet must be distinct ASCII letters, got {self.alphabet!r}")


class CopyTask(Task):
    name: ClassVar[str] = "copy"
    description: ClassVar[str] = "copy a string of letters"
    Config: ClassVar[type[TaskConfig]] = CopyConfig
    buckets: ClassVar[tuple[str, ...]] = ("length",)
    default_by: ClassVar[tuple[str, ...]] = ("length",)
    key_columns: ClassVar[tuple[str, ...]] = ("seq",)

    @property
    def chars(self) -> str:
        return self.config.alphabet + "="

    def transform(self, s: str) -> str:
        return s

    def levels(self) -> list[dict]:
        """One more symbol per level, from length 1 to the configured max_len."""
        return ramp("max_len", self.config.max_len, "min_len", self.config.min_len)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        c = self.config
        seq, length = random_sequences(rng, n, c.min_len, c.max_len, len(c.alphabet))
        return Problems(seq=seq, length=length)

    def max_length(self, splits=("train",)) -> int:
        return 2 * self.config.max_len + 2

    def render(self, p: Problems) -> Rendered:
        s = as_strings(p["seq"], p["length"], self.config.alphabet)
        return render_strings([x + "=" for x in s], [self.transform(x) for x in s])

    def solve(self, p: Problems) -> list[str]:
        a = self.config.alphabet
        return [self.transform("".join(a[v - 1] for v in row if v)) for row in p["seq"].tolist()]

    def parse_answer(self, text: str) -> str | None:
        return text if text and all(ch in self.config.alphabet for ch in text) else None
