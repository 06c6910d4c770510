"""Position ids that come with the data: a task numbers its own tokens.

    model.pos = abacus | coupled

Both are learned embeddings of an integer id per token, and the model takes the ids as input
(gpt/positions.py: GivenPositions); what differs is who decides the ids, and that is the
task's business, so it lives here:

    abacus   (McLeish et al. 2024) a digit's index within its run of digits, 1, 2, 3, ...;
             every other character 0.  Generic: any task with digits has it.
    coupled  (Cho et al. 2024) digits of equal significance in the operands share one id, and
             the answer counts up from the "=" so that the token that *predicts* the answer's
             digit of significance i has id i.  A task defines it from its own format
             (AdditionTask, MultiplicationTask).

A scheme gives ids for the prompt; the target's are then a pure function of its tokens, the
same rule that decoding applies to each generated token (gpt/generate.py):

    id(t) = id(t - 1) + step   if token t is one of the scheme's `counting` characters
            1                  if it is one of its `restart` characters
            0                  otherwise

`step` is 1 except in interleaved coupling (below).  A restart character begins a new number
of the target at id 1, as "=" begins the answer: in a multiplication scratchpad every partial
product and every sum is coupled to the operands (MultiplicationTask).

Worked example, coupled reversed addition, 12+345 = 357, rendered "12+345=753$":

    chars  1 2 + 3 4 5 = 7 5 3 $
    ids    2 1 0 3 2 1 1 2 3 4 5

"=" (id 1) predicts 7, the digit of significance 1, which a_1 = 2 and b_1 = 5 share.

Shared ids put answer digits on the operands' ids: the token that predicts the digit of
significance i also sees, at id i - 1, the answer digit of significance i - 2 beside a_(i-1)
and b_(i-1), and a key's id difference is all a relative bias knows of it.  Interleaved
coupling (AdditionTask, `task.coupled_ids=interleaved`) gives operand digits even ids (2i)
and the answer odd ones (step 2), so the predictor of significance i (id 2i - 1) has a_i, b_i
at +1, a_(i-1), b_(i-1) at -1 and the answer's own digits at -2, -4, ...:

    chars  1 2 + 3 4 5 = 7 5 3 $
    ids    4 2 0 6 4 2 1 3 5 7 9

A token every position needs, wherever it is, goes in a fixed slot, id -1, -2, ...: in N x 2
multiplication the multiplier's digits (MultiplicationTask).  Slots are never shifted.

In training every row's positive ids are shifted by a random offset, drawn with the batch's
own generator, so that every id up to model.max_pos is trained, not only those of the longest
training problem (`shift`).  Evaluation uses offset 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasks.encode import Rendered, codepoints

SCHEMES = ("abacus", "coupled")
COUPLINGS = ("shared", "interleaved")  # coupled ids: the answer on the operands' ids, or between them
DIGITS = "0123456789"


@dataclass(frozen=True)
class PositionIds:
    """What a batch needs to attach position ids: the scheme and the largest id the model embeds."""

    scheme: str
    max_pos: int

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"position ids: scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.max_pos < 1:
            raise ValueError(f"position ids: max_pos must be >= 1, got {self.max_pos}")


@dataclass(frozen=True)
class Scheme:
    """How a task numbers its tokens: ids for the prompt, and which target characters count on."""

    prompt_ids: Callable[[Rendered], np.ndarray]  # r -> (N, W) ids; only prompt columns are read
    counting: str  # target characters whose id is the previous id + step (the rest get 0)
    restart: str = ""  # target characters whose id is 1: each begins a new number, as "=" does
    slots: int = 0  # the prompt may put tokens in fixed slots, ids -1 .. -slots (never shifted)
    step: int = 1  # how much each counting character adds to the id

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"position ids: a counting step must be >= 1, got {self.step}")
        if set(self.restart) & set(self.counting):
            raise ValueError(f"position ids: {self.restart!r} both restarts and counts")

    def token_rules(self, chars: str) -> list[tuple[int, int]]:
        """Per vocabulary character, (keep, add): decoding's next id is keep * the last id + add
        (gpt.generate.next_position): (1, step) counts on, (0, 1) restarts, (0, 0) is none."""
        return [(1, self.step) if c in self.counting else (0, 1) if c in self.restart else (0, 0) for c in chars]


def coupling_step(coupled_ids: str) -> int:
    """A task's `coupled_ids` option -> the answer's counting step (shared 1, interleaved 2)."""
    if coupled_ids not in COUPLINGS:
        raise ValueError(f"coupled_ids must be one of {', '.join(COUPLINGS)}, got {coupled_ids!r}")
    return COUPLINGS.index(coupled_ids) + 1


def digit_index(chars: np.ndarray, from_right: bool = False) -> np.ndarray:
    """(N, W) codepoints -> each digit's index within its run of digits, 1-based, counted from
    the run's left end (or its right end: a most-significant-first number's significance);
    0 for every other character.  Zero codepoints (padding) are not digits."""
    if from_right:
        return digit_index(chars[:, ::-1])[:, ::-1]
    d = ((chars >= ord("0")) & (chars <= ord("9"))).astype(np.int64)
    c = d.cumsum(1)
    # the digit count at the last non-digit so far; the index is the count since then
    base = np.maximum.accumulate(np.where(d == 0, c, 0), axis=1)
    return (c - base) * d


def abacus_prompt(r: Rendered) -> np.ndarray:
    return digit_index(r.chars)


ABACUS = Scheme(abacus_prompt, DIGITS)


def count_on(prompt: np.ndarray, r: Rendered, counting: str, step: int = 1, restart: str = "") -> np.ndarray:
    """Ids for every character of r: the prompt's from `prompt`, each target character's by the
    counting rule (see the module docstring); 0 past each row's length.

    A target character in `counting` takes the id before it plus step; every other column is an
    anchor with an id of its own (the prompt's, 1 for a `restart` character, else 0).  So a
    counting column's id is its last anchor's plus step times the distance to it: one pass of
    maximum.accumulate over the columns, not a loop over them (a batch's hot path)."""
    w = r.chars.shape[1]
    col = np.arange(w)[None, :]
    in_prompt = col < r.prompt_len[:, None]
    counted = np.isin(r.chars, codepoints(counting)) & ~in_prompt
    anchor_id = np.where(in_prompt, prompt[:, :w], 0).astype(np.int64)
    if restart:
        anchor_id[np.isin(r.chars, codepoints(restart)) & ~in_prompt & ~counted] = 1
    # the last anchor at or before each column; -1 (an id-0 anchor before column 0) if none
    last = np.maximum.accumulate(np.where(counted, -1, col), axis=1)
    base = np.take_along_axis(anchor_id, np.maximum(last, 0), axis=1) * (last >= 0)
    ids = base + step * (col - last) * counted
    return np.where(col < r.length[:, None], ids, 0)


def shift(ids: np.ndarray, max_pos: int, rng: np.random.Generator) -> np.ndarray:
    """Each row's positive ids moved up by its own offset in [0, max_pos - the row's largest id]."""
    top = ids.max(axis=1)
    check_max_pos(int(top.max(initial=0)), max_pos, "a training problem")
    offset = rng.integers(0, max_pos - top + 1)
    return np.where(ids > 0, ids + offset[:, None], ids)  # slots (< 0) and "none" (0) stay


def check_max_pos(need: int, max_pos: int, what: str) -> None:
    if need > max_pos:
        raise ValueError(f"model.max_pos={max_pos} is too small: {what} needs position ids up to {need}; "
                         f"pass --set model.max_pos={need} or more")
