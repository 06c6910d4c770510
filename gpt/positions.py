"""Position encodings, one class each, chosen once at construction.

    model.pos = learned | none | rope | abacus | coupled | coupled_rope | coupled_rel | coupled_local

Every encoding answers two questions, so the model has no branches:
    embed(idx, index, cache, pos_ids) -> what to add to the token embeddings (or 0)
    rotate(q, k, index, pos_ids)      -> queries and keys, rotated or as they were
    attn_bias(pos_ids, key_ids, hide) -> what to add to the attention scores (or None), -inf
                                         where hide (T, S) says a key is hidden (the causal mask)

`index` (1 or B, T) is each token's position: 0, 1, 2, ... from the row's start (from
cache.pos while decoding with a KV cache), or from its problem's start in a packed row.
abacus, coupled and coupled_rope read position ids that come with the data instead
(`pos_ids`, (B, T)), which the task decides (tasks/positions.py).

Given ids mean: 1, 2, 3, ... positions (training shifts them by a random offset); 0, no
position; -1 .. -config.pos_slots, fixed slots, never shifted: a token every position
needs to find, wherever it is (the multiplier's digits in N x 2 multiplication).  coupled,
coupled_rel and coupled_local embed slots; the others have none (GPTConfig refuses pos_slots there).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt.config import GIVEN

ROPE_BASE = 10000.0  # RoPE's wavelengths: base ** (2i / head_size)


class NoPositions(nn.Module):
    """NoPE (Kazemnejad et al. 2023): nothing; the causal mask alone lets the model count.

    Also the base of the others: it adds nothing and rotates nothing."""

    def __init__(self, config):
        super().__init__()

    def embed(self, idx: torch.Tensor, index: torch.Tensor, cache=None, pos_ids: torch.Tensor | None = None
              ) -> torch.Tensor | float:
        return 0.0

    def rotate(self, q: torch.Tensor, k: torch.Tensor, index: torch.Tensor, pos_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def attn_bias(self, pos_ids: torch.Tensor | None, key_ids: torch.Tensor | None,
                  hide: torch.Tensor | None = None) -> torch.Tensor | None:
        return None


class LearnedPositions(NoPositions):
    """GPT-2: one learned vector per absolute position."""

    def __init__(self, config):
        super().__init__(config)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)

    def embed(self, idx: torch.Tensor, index: torch.Tensor, cache=None, pos_ids: torch.Tensor | None = None
              ) -> torch.Tensor:
        return self.wpe(index)  # (1 or B, T, C)


class RotaryPositions(NoPositions):
    """RoPE (Su et al. 2021): rotate each (q, k) pair of channels by an angle proportional to
    the position, so q.k depends only on the distance between two tokens."""

    def __init__(self, config, base: float = ROPE_BASE):
        super().__init__(config)
        d = config.head_size
        inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)  # (D/2,)
        angles = torch.outer(torch.arange(config.block_size, dtype=torch.float32), inv_freq)  # (T, D/2)
        # not saved in checkpoints: they are a pure function of the config
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def rotate(self, q: torch.Tensor, k: torch.Tensor, index: torch.Tensor, pos_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.cos[index][:, None], self.sin[index][:, None]  # (1 or B, 1, T, D/2): over the heads
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D): rotate the pairs (x[..., i], x[..., i + D/2]) (GPT-NeoX layout)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def required(pos_ids: torch.Tensor | None) -> torch.Tensor:
    """The ids an encoding of GIVEN reads; the model without them is a caller's mistake."""
    if pos_ids is None:
        raise ValueError(f"model.pos={'|'.join(GIVEN)} reads position ids given with the tokens: "
                         "pass idx as (B, T, 2) token ids and position ids")
    return pos_ids


class GivenPositions(NoPositions):
    """Position ids that come with the data: one learned vector per id, id 0 included.

    model.pos=abacus (McLeish et al. 2024: a digit's index within its number) and
    model.pos=coupled (Cho et al. 2024: digits of equal significance share an id) are the same
    module; they differ in how the data numbers its tokens, which is the task's business
    (tasks/positions.py).  Ids run from 0 to config.max_pos; training shifts each row's ids
    by a random offset so that every id up to max_pos is trained, and decoding continues
    them itself (gpt/generate.py).  Ids past max_pos share its vector: they were never trained.
    Slot -s has row max_pos + s.
    """

    def __init__(self, config):
        super().__init__(config)
        self.max_pos = config.max_pos
        self.wpe = nn.Embedding(config.max_pos + 1 + config.pos_slots, config.n_embd)

    def embed(self, idx: torch.Tensor, index: torch.Tensor, cache=None, pos_ids: torch.Tensor | None = None) -> torch.Tensor:
        ids = required(pos_ids)
        row = torch.where(ids < 0, self.max_pos - ids, ids.clamp(0, self.max_pos))
        return self.wpe(row.clamp(0, self.wpe.num_embeddings - 1))  # (B, T, C)


class GivenRotary(NoPositions):
    """RoPE over the position ids that come with the data: q.k depends only on the difference
    of two tokens' ids.  With coupled ids, "the digits of my significance" is a difference of
    0 and "the digits one below" a difference of 1, whatever the significance: one attention
    pattern serves every length, where learned id vectors must be trained id by id."""

    def __init__(self, config, base: float = ROPE_BASE):
        super().__init__(config)
        d = config.head_size
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float32) / d),
                             persistent=False)

    def embed(self, idx: torch.Tensor, index: torch.Tensor, cache=None, pos_ids: torch.Tensor | None = None) -> float:
        required(pos_ids)
        return 0.0

    def rotate(self, q: torch.Tensor, k: torch.Tensor, index: torch.Tensor, pos_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        angles = (pos_ids.float()[..., None] * self.inv_freq)[:, None]  # (B, 1, T, D/2), broadcast over heads
        cos, sin = angles.cos(), angles.sin()
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


class GivenRelative(NoPositions):
    """Attention by the difference of two tokens' given ids: a learned bias per head for each
    difference in [-CLIP, CLIP], and keys further away than CLIP masked out (Shaw et al. 2018's
    clipped relative positions, on coupled ids, with the far side cut off; CLIP is
    model.rel_clip, 2 by default).  Tokens without a position (id 0: "+") get one more learned
    bias, whatever the other id; a key in slot s (id -s) gets its own bias from every query with
    a position, never cut off.

    With coupled ids a digit needs the digits of its own significance (difference 0) and of the
    one below (difference 1).  Cutting off the far keys makes what a query sees the same at
    every length: a longer problem adds keys only beyond CLIP, where nobody looks.  CLIP is
    small so that training shows that window full on both sides: with a clip of 8 it is full only
    for numbers of 17+ digits, and 10-digit training left digit 10 onwards of longer sums wrong.
    A learned bias for far keys instead of the cut let fifty of them drown the near ones; RoPE
    over the same ids never saw a difference longer than the training problems (docs/LOG.md,
    2026-11-30)."""

    def __init__(self, config):
        super().__init__(config)
        # rows 0 .. 2*CLIP: difference + CLIP; row 2*CLIP + 1: no position on either side (or a
        # slot asking); row 2*CLIP + 1 + s: a positioned query looking at slot s
        self.clip = config.rel_clip
        self.slots = config.pos_slots
        self.rel = nn.Embedding(2 * self.clip + 2 + self.slots, config.n_head)

    def embed(self, idx: torch.Tensor, index: torch.Tensor, cache=None, pos_ids: torch.Tensor | None = None) -> float:
        required(pos_ids)
        return 0.0

    def attn_bias(self, pos_ids: torch.Tensor | None, key_ids: torch.Tensor | None,
                  hide: torch.Tensor | None = None) -> torch.Tensor:
        # ids fit in int32 (half the memory traffic of int64 over B x T x S), which embedding takes
        q, k = pos_ids.int()[:, :, None], key_ids.int()[:, None, :]  # (B, T, 1), (B, 1, S)
        none = 2 * self.clip + 1
        slot = none + (-k).clamp(0, self.slots)  # k > 0 and k == 0 give `none`, k = -s gives none + s
        bucket = torch.where((q > 0) & (k > 0), (q - k).clamp(-self.clip, self.clip) + self.clip,
                             torch.where(q > 0, slot, none))
        # a hidden key (cut off, or hidden by the causal mask) reads a last row of -inf: one
        # gather makes the bias and every mask at once
        cut = self.hidden(q, k) if hide is None else self.hidden(q, k) | hide
        table = torch.cat([self.rel.weight, self.rel.weight.new_full((1, self.rel.weight.size(1)), float("-inf"))])
        bias = F.embedding(bucket.masked_fill_(cut, self.rel.num_embeddings), table)  # (B, T, S, H)
        return bias.permute(0, 3, 1, 2).contiguous()  # (B, H, T, S), laid out as SDPA reads a mask: once, not per layer

    def hidden(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(B, T, 1) query ids, (B, 1, S) key ids -> (B, T, S) True where the key is cut off:
        two positions further apart than the clip."""
        return ((q - k).abs() > self.clip) & (q > 0) & (k > 0)


class GivenLocal(GivenRelative):
    """coupled_rel, and a token without a position (id 0 or a slot) sees no token with one.

    Under coupled_rel those tokens see every key: "*" and the multiplier's slots read the
    whole of a, and every answer digit reads them back.  What they carry then depends on a's
    length (an average over 10 digits in training, over 20 in the test), the one channel by
    which a longer problem reaches a digit.  Seeds that used it failed at length.  Cut it,
    and a digit sees the ids near its own, through each layer, and tokens whose state is the
    same at every length (docs/LOG.md, 2026-12-06)."""

    def hidden(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return super().hidden(q, k) | ((q <= 0) & (k > 0))  # and every position, from no position


_CLASSES = {"learned": LearnedPositions, "none": NoPositions, "rope": RotaryPositions,
            "abacus": GivenPositions, "coupled": GivenPositions, "coupled_rope": GivenRotary,
            "coupled_rel": GivenRelative, "coupled_local": GivenLocal}


def make_positions(config) -> nn.Module:
    return _CLASSES[config.pos](config)
