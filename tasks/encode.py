"""Characters to token ids, and rendered problems to (x, y) training arrays.

Everything here is vectorised over characters: problems are rendered into
character matrices (one row per problem, codepoints as integers) and turned
into ids with one table lookup.  No Python loop runs per character.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

END = "$"  # end-of-answer token: the model emits it to say "done"
IGNORE = -1  # target value the loss skips


class Vocab:
    """A character vocabulary: id i <-> chars[i]."""

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError(f"vocabulary has repeated characters: {chars!r}")
        if not chars:
            raise ValueError("vocabulary is empty")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self._cp = np.array([ord(c) for c in chars], dtype=np.int64)
        self._lut = np.full(max(256, int(self._cp.max()) + 1), -1, dtype=np.int64)
        self._lut[self._cp] = np.arange(len(chars))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.chars == self.chars

    def __repr__(self) -> str:
        return f"Vocab({self.chars!r})"

    def ids_of_codepoints(self, cps: np.ndarray) -> np.ndarray:
        """Codepoint array (any shape) -> id array; raises on characters outside the vocab."""
        cps = np.asarray(cps)
        safe = np.where(cps < len(self._lut), cps, 0)
        ids = self._lut[safe]
        bad = (ids < 0) | (cps >= len(self._lut))
        if bad.any():
            missing = sorted({chr(int(c)) for c in np.unique(cps[bad])})
            raise ValueError(f"characters not in the vocabulary: {''.join(missing)!r}")
        return ids

    def encode(self, s: str) -> list[int]:
        return self.ids_of_codepoints(codepoints(s)).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def contains(self, s: str) -> bool:
        return all(c in self.stoi for c in s)


def codepoints(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


# ---- character matrices ------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    """Problems rendered as characters: row i is chars[i, :length[i]] (codepoints).

    The first prompt_len[i] characters are the prompt; the rest is the target:
    optional chain-of-thought, the answer, then END.
    """

    chars: np.ndarray  # (N, W) int64 codepoints, 0 past each row's length
    prompt_len: np.ndarray  # (N,)
    length: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.length)

    def prompt(self, i: int) -> str:
        return "".join(map(chr, self.chars[i, : self.prompt_len[i]]))

    def target(self, i: int) -> str:
        """The target without the END token."""
        return "".join(map(chr, self.chars[i, self.prompt_len[i] : self.length[i] - 1]))


def field_const(s: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The same string in every row."""
    return np.broadcast_to(codepoints(s), (n, len(s))), np.full(n, len(s))


def field_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A column of Python strings -> (matrix, lengths); one encode call for all of them."""
    lens = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    flat = codepoints("".join(strings))
    width = int(lens.max()) if len(lens) else 0
    out = np.zeros((len(strings), max(width, 1)), dtype=np.int64)
    rows = np.repeat(np.arange(len(strings)), lens)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
    out[rows, cols] = flat
    return out, lens


def field_digits(digits: np.ndarray, count: np.ndarray, reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Numbers stored as little-endian digit matrices (N, D) -> their decimal characters.

    Row i has count[i] digits.  reverse=True writes the least significant digit first.
    """
    n, d = digits.shape
    j = np.arange(d)[None, :]
    idx = j if reverse else np.clip(count[:, None] - 1 - j, 0, d - 1)
    chars = np.take_along_axis(digits, np.broadcast_to(idx, (n, d)), axis=1).astype(np.int64) + ord("0")
    return np.where(j < count[:, None], chars, 0), count.astype(np.int64)


def concat(*fields: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate variable-length fields row-wise."""
    n = len(fields[0][1])
    total = sum(f[1] for f in fields)
    out = np.zeros((n, int(total.max()) if n else 0), dtype=np.int64)
    offset = np.zeros(n, dtype=np.int64)
    for mat, lens in fields:
        rows, cols = np.nonzero(np.arange(mat.shape[1]) < lens[:, None])  # each row's characters
        out[rows, offset[rows] + cols] = mat[rows, cols]
        offset = offset + lens
    return out, total


def render_fields(prompt: list, target: list) -> Rendered:
    """Build a Rendered from prompt fields and target fields; END is appended."""
    n = len(prompt[0][1])
    p_chars, p_len = concat(*prompt)
    chars, length = concat((p_chars, p_len), *target, field_const(END, n))
    return Rendered(chars, p_len, length)


def render_strings(prompts: Sequence[str], targets: Sequence[str]) -> Rendered:
    """For tasks that render with Python string formatting (one call per problem, not per char)."""
    return render_fields([field_strings(prompts)], [field_strings(targets)])


# ---- training arrays -----------------------------------------------------------------------

def to_xy(r: Rendered, vocab: Vocab, mask_prompt: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) int64 arrays of shape (N, W-1) where W is the longest row.

    y is x shifted by one.  y = -1 where the next character is prompt (when
    mask_prompt) or padding, so the loss covers exactly the target and END.
    Rows are right-padded with END in x; causal attention never lets padding
    influence earlier positions.
    """
    w = int(r.length.max())
    chars = r.chars[:, :w]
    pos = np.arange(w)[None, :]
    ids = vocab.ids_of_codepoints(np.where(pos < r.length[:, None], chars, ord(END)))
    x = ids[:, :-1]
    y = ids[:, 1:].copy()
    nxt = pos[:, 1:]  # position of the character y predicts
    masked = nxt >= r.length[:, None]
    if mask_prompt:
        masked |= nxt < r.prompt_len[:, None]
    y[masked] = IGNORE
    return np.ascontiguousarray(x), y
