"""Parity of a bit string, with an `ood` split of longer strings.

Worked example (lengths 1-10):

    "10110="  ->  "1$"      (three ones: odd)

Transformers are known to learn parity poorly and to generalise it to longer
strings worse still (Hahn 2020; Anil et al. 2022); the `ood` split (lengths
max_len+1 .. ood_max_len) measures that.  Held out: 5% of strings by salted hash.
Buckets: length, ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tasks.base import Problems, Task, TaskConfig
from tasks.curriculum import ramp
from tasks.encode import Rendered, render_strings
from tasks.seq import check_lengths


@dataclass(frozen=True)
class ParityConfig(TaskConfig):
    min_len: int = 1
    max_len: int = 10
    ood_max_len: int = 0  # 0: 2 * max_len

    def __post_init__(self) -> None:
        check_lengths(self.min_len, self.max_len)
        if self.ood_max_len and self.ood_max_len <= self.max_len:
            raise ValueError(f"ood_max_len ({self.ood_max_len}) must exceed max_len ({self.max_len})")

    @property
    def ood_len(self) -> int:
        return self.ood_max_len or 2 * self.max_len


class ParityTask(Task):
    name: ClassVar[str] = "parity"
    description: ClassVar[str] = "parity of a bit string (ood: longer strings)"
    Config: ClassVar[type[TaskConfig]] = ParityConfig
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "ood")
    buckets: ClassVar[tuple[str, ...]] = ("length", "ones")
    default_by: ClassVar[tuple[str, ...]] = ("length",)
    key_columns: ClassVar[tuple[str, ...]] = ("bits", "length")

    @property
    def chars(self) -> str:
        return "01="

    def levels(self) -> list[dict]:
        """One more symbol per level, from length 1 to the configured max_len."""
        return ramp("max_len", self.config.max_len, "min_len", self.config.min_len)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        c = self.config
        lo, hi = (c.max_len + 1, c.ood_len) if split == "ood" else (c.min_len, c.max_len)
        length = rng.integers(lo, hi + 1, size=n)
        bits = rng.integers(0, 2, size=(n, c.ood_len))
        bits[np.arange(c.ood_len)[None, :] >= length[:, None]] = 0
        return Problems(bits=bits, length=length, ones=bits.sum(axis=1))

    def max_length(self, splits=("train",)) -> int:
        return (self.config.ood_len if "ood" in splits else self.config.max_len) + 3

    def render(self, p: Problems) -> Rendered:
        rows = [row[:k] for row, k in zip(p["bits"].tolist(), p["length"].tolist())]
        return render_strings(["".join(map(str, r)) + "=" for r in rows], [str(sum(r) % 2) for r in rows])

    def solve(self, p: Problems) -> list[str]:
        out = []
        for row, k in zip(p["bits"].tolist(), p["length"].tolist()):
            acc = 0
            for b in row[:k]:
                acc ^= b
            out.append(str(acc))
        return out

    def parse_answer(self, text: str) -> str | None:
        return text if text in ("0", "1") else None
