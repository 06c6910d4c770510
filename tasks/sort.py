"""Sort a sequence of digits.

Worked example (lengths 2-8):

    "3142="  ->  "1234$"

Held out: 5% of sequences by salted hash.  Buckets: length, distinct (number of
distinct digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import Problems, Task, TaskConfig
from tasks.curriculum import ramp
from tasks.encode import Rendered, render_strings
from tasks.seq import check_lengths, random_sequences


@dataclass(frozen=True)
class SortConfig(TaskConfig):
    min_len: int = 2
    max_len: int = 8

    def __post_init__(self) -> None:
        check_lengths(self.min_len, self.max_len)


class SortTask(Task):
    name: ClassVar[str] = "sort"
    description: ClassVar[str] = "sort a sequence of digits"
    Config: ClassVar[type[TaskConfig]] = SortConfig
    buckets: ClassVar[tuple[str, ...]] = ("length", "distinct")
    default_by: ClassVar[tuple[str, ...]] = ("length",)
    key_columns: ClassVar[tuple[str, ...]] = ("seq",)

    @property
    def chars(self) -> str:
        return "0123456789="

    def levels(self) -> list[dict]:
        """One more symbol per level, from length 2 to the configured max_len."""
        return ramp("max_len", self.config.max_len, "min_len", self.config.min_len, start=2)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        c = self.config
        seq, length = random_sequences(rng, n, c.min_len, c.max_len, 10)  # symbol k is digit k-1
        distinct = np.array([len(set(row[:k])) for row, k in zip(seq.tolist(), length.tolist())])
        return Problems(seq=seq, length=length, distinct=distinct)

    def max_length(self, splits=("train",)) -> int:
        return 2 * self.config.max_len + 2

    def _digits(self, p: Problems) -> list[list[int]]:
        return [[v - 1 for v in row[:k]] for row, k in zip(p["seq"].tolist(), p["length"].tolist())]

    def render(self, p: Problems) -> Rendered:
        d = self._digits(p)
        return render_strings(["".join(map(str, x)) + "=" for x in d], ["".join(map(str, sorted(x))) for x in d])

    def solve(self, p: Problems) -> list[str]:
        # counting sort: independent of the sorted() used in render
        out = []
        for x in self._digits(p):
            counts = np.bincount(np.array(x, dtype=np.int64), minlength=10)
            out.append("".join(str(v) * int(k) for v, k in enumerate(counts)))
        return out

    def parse_answer(self, text: str) -> str | None:
        return text if text.isdigit() and text.isascii() else None
