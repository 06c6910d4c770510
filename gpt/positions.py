"""Position encodings, one class each, chosen once at construction.

    model.pos = learned | none | rope | abacus

Every encoding answers two questions, so the model has no branches:
    embed(idx, start, cache) -> what to add to the token embeddings (or 0)
    rotate(q, k, start)      -> queries and keys, rotated or as they were

`start` is the position of idx's first token (non-zero while decoding with a
KV cache).  Only abacus needs more than that: a digit's index depends on the
digits before it, so while decoding it keeps each row's current digit run in
the cache (`cache.state`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

POSITIONS = ("learned", "none", "rope", "abacus")


class NoPositions(nn.Module):
    """NoPE (Kazemnejad et al. 2023): nothing; the causal mask alone lets the model count.

    Also the base of the others: it adds nothing and rotates nothing."""

    def __init__(self, config):
        super().__init__()

    def embed(self, idx: torch.Tensor, start: int, cache=None) -> torch.Tensor | float:
        return 0.0

    def rotate(self, q: torch.Tensor, k: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k


class LearnedPositions(NoPositions):
    """GPT-2: one learned vector per absolute position."""

    def __init__(self, config):
        super().__init__(config)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)

    def embed(self, idx: torch.Tensor, start: int, cache=None) -> torch.Tensor:
        pos = torch.arange(start, start + idx.size(1), dtype=torch.long, device=idx.device)
        return self.wpe(pos)  # (T, C), broadcast over the batch


class RotaryPositions(NoPositions):
    """RoPE (Su et al. 2021): rotate each (q, k) pair of channels by an angle proportional to
    the position, so q.k depends only on the distance between two tokens."""

    def __init__(self, config, base: float = 10000.0):
        super().__init__(config)
        d = config.head_size
        inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)  # (D/2,)
        angles = torch.outer(torch.arange(config.block_size, dtype=torch.float32), inv_freq)  # (T, D/2)
        # not saved in checkpoints: they are a pure function of the config
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def rotate(self, q: torch.Tensor, k: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        T = q.size(2)
        cos, sin = self.cos[start : start + T], self.sin[start : start + T]  # (T, D/2)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D): rotate the pairs (x[..., i], x[..., i + D/2]) (GPT-NeoX layout)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class AbacusPositions(NoPositions):
    """Abacus (McLeish et al. 2024): a digit is embedded by its index within its number.

    Non-digit tokens get index 0 (a learned "not a digit" vector); the k-th digit of a run of
    digits gets index k.  With little-endian numbers the index is the digit's significance,
    so digits that must be added line up however long the numbers are.  In training every
    sequence's indices are shifted by an offset in [0, abacus_offset], so indices beyond the
    longest training number are trained too: that is what lets it generalise to longer
    numbers.  The offset is a hash of the sequence's tokens rather than a draw from an RNG:
    batches stay pure functions of the data, and runs resume exactly.
    """

    def __init__(self, config):
        super().__init__(config)
        if not config.abacus_digits:
            raise ValueError("model.pos=abacus needs model.abacus_digits (the token ids of the digits "
                             "0-9); `workbench train` sets them from the task's vocabulary")
        self.max_offset = config.abacus_offset
        self.wpe = nn.Embedding(config.block_size + config.abacus_offset + 1, config.n_embd)
        self.register_buffer("digits", torch.tensor(config.abacus_digits, dtype=torch.long), persistent=False)
        mult = torch.randint(1, 2**31 - 1, (config.block_size,), generator=torch.Generator().manual_seed(0))
        self.register_buffer("mult", mult, persistent=False)

    def indices(self, idx: torch.Tensor, carry: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) token ids -> (B, T) index of each digit within its number (0: not a digit).

        carry (B,): length of the digit run that ends just before idx (decoding)."""
        d = torch.isin(idx, self.digits).long()
        c = d.cumsum(1)
        # the digit count at the last non-digit so far; run length = count since then
        base = torch.where(d == 0, c, torch.zeros_like(c)).cummax(1).values
        run = c - base
        if carry is not None:  # a run that started before this chunk continues into it
            unbroken = (1 - d).cumsum(1) == 0
            run = run + unbroken * carry[:, None]
        return run * d

    def embed(self, idx: torch.Tensor, start: int, cache=None) -> torch.Tensor:
        carry = cache.state.get("abacus_run") if cache is not None else None
        run = self.indices(idx, carry)
        if cache is not None:
            cache.state["abacus_run"] = run[:, -1]
        if self.training and self.max_offset > 0:
            offset = (idx * self.mult[: idx.size(1)]).sum(1) % (self.max_offset + 1)  # (B,)
            run = torch.where(run > 0, run + offset[:, None], run)
        return self.wpe(run.clamp(max=self.wpe.num_embeddings - 1))  # (B, T, C)


_CLASSES = {"learned": LearnedPositions, "none": NoPositions, "rope": RotaryPositions, "abacus": AbacusPositions}


def make_positions(config) -> nn.Module:
    return _CLASSES[config.pos](config)
