"""Helpers for tasks over random sequences of symbols (copy, reverse, sort, parity).

A batch of sequences is a matrix of symbol indices, 1-based so that 0 can mean
"no symbol" (the held-out hash ignores trailing zeros), plus the lengths.
"""

from __future__ import annotations

import numpy as np


def random_sequences(rng: np.random.Generator, n: int, min_len: int, max_len: int,
                     n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, max_len) matrix of symbols 1..n_symbols (0 past each row's length), and the lengths."""
    length = rng.integers(min_len, max_len + 1, size=n)
    seq = rng.integers(1, n_symbols + 1, size=(n, max_len))
    seq[np.arange(max_len)[None, :] >= length[:, None]] = 0
    return seq, length


def as_strings(seq: np.ndarray, length: np.ndarray, alphabet: str) -> list[str]:
    """Rows of 1-based symbol indices -> strings over alphabet."""
    table = np.array([""] + list(alphabet), dtype=object)
    return ["".join(table[row[:k]]) for row, k in zip(seq.tolist(), length.tolist())]


def check_lengths(min_len: int, max_len: int) -> None:
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
