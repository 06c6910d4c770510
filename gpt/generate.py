"""Decoding: a preallocated KV cache, batched greedy completion, and sampling.

Small pure functions in the spirit of gpt-fast.  Prompts of different
lengths are grouped by length, so every row of a decoding batch sits at the
same position and no padding mask is needed; rows that have emitted the end token
are compacted out of the cache in place once they are a quarter of the batch, so
finished rows cost little and compaction stays rare.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from gpt.model import GPT


class KVCache:
    """Keys and values for every layer, preallocated for (batch, max_len)."""

    def __init__(self, model: GPT, batch: int, max_len: int, device, dtype=torch.float32):
        c = model.config
        shape = (c.n_layer, batch, c.n_head, max_len, c.head_size)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.batch = batch  # rows in use; the first `batch` rows of the buffers
        self.pos = 0
        self.max_len = max_len
        self.ids = torch.zeros(batch, max_len, dtype=torch.long, device=device)  # position ids, if the model takes them

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = k.size(2)
        end = self.pos + T
        self.k[layer, : self.batch, :, self.pos : end] = k
        self.v[layer, : self.batch, :, self.pos : end] = v
        return self.k[layer, : self.batch, :, :end], self.v[layer, : self.batch, :, :end]

    def update_ids(self, pos_ids: torch.Tensor) -> torch.Tensor:
        """Store the new tokens' position ids (B, T); -> the ids of every key so far (B, pos + T)."""
        end = self.pos + pos_ids.size(1)
        self.ids[: self.batch, self.pos : end] = pos_ids
        return self.ids[: self.batch, :end]

    def mask(self, T: int) -> torch.Tensor | None:
        """Attention mask for T new queries: query i sees keys 0..pos+i."""
        if T == 1:
            return None  # a single new token sees everything cached
        q = torch.arange(self.pos, self.pos + T, device=self.k.device)
        keys = torch.arange(self.pos + T, device=self.k.device)
        return keys[None, :] <= q[:, None]

    def advance(self, T: int) -> None:
        self.pos += T

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (ascending indices), moved to the front in place."""
        n = rows.numel()
        self.k[:, :n, :, : self.pos] = self.k[:, rows, :, : self.pos]
        self.v[:, :n, :, : self.pos] = self.v[:, rows, :, : self.pos]
        self.ids[:n, : self.pos] = self.ids[rows, : self.pos]
        self.batch = n


def next_position(last: torch.Tensor, tokens: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Position ids that come with the data (model.pos=abacus|coupled), continued while decoding
    (tasks/positions.py numbers training targets by the same rule).  last, tokens (B,) -> (B,).

    counts (V, 2): each token's (keep, add), the next id being keep * last + add; or (V,) each
    token's step, where a token that counts (step > 0; True counts as 1) takes last + step and
    any other token 0."""
    rule = counts.long()
    if rule.dim() == 1:
        rule = torch.stack([(rule > 0).long(), rule], dim=-1)
    keep, add = rule[tokens].unbind(-1)
    return keep * last + add


def with_positions(tokens: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """(B, T) tokens, and their (B, T) position ids if any -> the model's input."""
    return tokens if pos is None else torch.stack([tokens, pos], dim=-1)


@torch.no_grad()
def greedy_batch(
    model: GPT, prompts: torch.Tensor, end_id: int, max_new_tokens: int, use_cache: bool = True,
    pos: torch.Tensor | None = None, counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy-decode equal-length prompts (B, T) -> (B, max_new_tokens) new tokens.

    A row stops at its end token; positions after it are filled with end_id.
    pos (B, T): the prompts' position ids, for model.pos=abacus|coupled; counts (V,) says
    what each token adds to them (next_position).
    """
    B, T = prompts.shape
    device = prompts.device
    max_new_tokens = min(max_new_tokens, model.config.block_size - T)
    out = torch.full((B, max_new_tokens), end_id, dtype=torch.long, device=device)
    if max_new_tokens <= 0:
        return out
    if pos is not None and counts is None:
        raise ValueError("greedy_batch: position ids need `counts`, the tokens that continue them")
    last = None if pos is None else pos[:, -1]
    active = torch.arange(B, device=device)  # original row of each row still in the batch
    done = torch.zeros(B, dtype=torch.bool, device=device)
    if use_cache:
        cache = KVCache(model, B, T + max_new_tokens, device, dtype=model.wte.weight.dtype)
        logits, _ = model(with_positions(prompts, pos), cache=cache)
        cache.advance(T)
    else:
        seq = with_positions(prompts, pos)
        logits, _ = model(seq)
    for t in range(max_new_tokens):
        nxt = logits[:, -1, :].argmax(dim=-1)  # (B_live,)
        nxt = torch.where(done, torch.full_like(nxt, end_id), nxt)  # finished rows repeat END
        out[active, t] = nxt
        done |= nxt == end_id
        n_done = int(done.sum())
        if n_done == done.numel() or t + 1 == max_new_tokens:
            break
        # drop finished rows once they are a quarter of the batch: compacting the cache copies
        # all of it, so doing it whenever any row finishes would cost as much as no cache
        if 4 * n_done >= done.numel():
            rows = (~done).nonzero().squeeze(1)
            active, nxt, done = active[rows], nxt[rows], done[rows]
            last = None if last is None else last[rows]
            if use_cache:
                cache.keep(rows)
            else:
                seq = seq[rows]
        if last is not None:
            last = next_position(last, nxt, counts)
        step = with_positions(nxt[:, None], None if last is None else last[:, None])
        if use_cache:
            logits, _ = model(step, cache=cache)
            cache.advance(1)
        else:
            seq = torch.cat([seq, step], dim=1)
            logits, _ = model(seq)
    return out


@torch.no_grad()
def greedy_complete(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    end_id: int,
    max_new_tokens: int,
    batch_size: int = 1024,
    use_cache: bool = True,
    positions: Sequence[Sequence[int]] | None = None,
    counts: Sequence[int] | Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Greedy completions of token-id prompts (lists or arrays), end token and anything after
    stripped.

    Prompts are grouped by length and decoded in batches of at most batch_size, so every row
    is decoded on its own position grid whatever shares its batch: the results do not depend
    on batch_size.  They come back in input order.  positions: each prompt's position ids
    (model.pos=abacus|coupled), and counts, per token id, how it continues them (next_position).
    """
    device = model.wte.weight.device
    results: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    count_t = None if counts is None else torch.as_tensor(np.asarray(counts, dtype=np.int64), device=device)

    def rows(seqs: Sequence[Sequence[int]], chunk: list[int], length: int) -> torch.Tensor:
        arr = np.array([seqs[i] for i in chunk], dtype=np.int64).reshape(len(chunk), length)
        return torch.from_numpy(arr).to(device)

    for length in sorted(by_len):
        index = by_len[length]
        for s in range(0, len(index), batch_size):
            chunk = index[s : s + batch_size]
            pos = None if positions is None else rows(positions, chunk, length)
            new = greedy_batch(model, rows(prompts, chunk, length), end_id, max_new_tokens, use_cache,
                               pos, count_t).cpu().numpy()
            ended = new == end_id
            stop = np.where(ended.any(axis=1), ended.argmax(axis=1), new.shape[1])
            for i, row, k in zip(chunk, new, stop):
                results[i] = row[:k].tolist()
    return results


@torch.no_grad()
def greedy_writes(model: GPT, rows: torch.Tensor, prompt_len: torch.Tensor, length: torch.Tensor,
                  pos: torch.Tensor | None = None) -> torch.Tensor:
    """Whether greedy decoding from each row's prompt writes exactly the rest of the row, found in
    one forward pass.  rows (B, W) token ids, each row's prompt_len and length (B,), anything past
    its length ignored; pos (B, W) its position ids, if the model takes them -> (B,) bool.

    Greedy decoding writes row[p:n] if and only if, with the row itself as input, the argmax at
    every position p-1 .. n-2 is the row's next token: by induction on the tokens written, each
    step then sees exactly the row's prefix.  So when most rows are right (an eval of a trained
    model), one pass scores them, where decoding takes a pass per new token; the rest are decoded."""
    W = rows.size(1)
    x = with_positions(rows[:, :-1], None if pos is None else pos[:, :-1])
    logits, _ = model(x)  # (B, W-1, V); causal, so whatever lies past a row's length changes nothing before it
    t = torch.arange(W - 1, device=rows.device)[None]  # (1, W-1): position t predicts token t+1
    scored = (t >= prompt_len[:, None] - 1) & (t < length[:, None] - 1)
    return ((logits.argmax(dim=-1) == rows[:, 1:]) | ~scored).all(dim=1)


def greedy_writes_all(model: GPT, rows: np.ndarray, prompt_len: np.ndarray, length: np.ndarray,
                      pos: np.ndarray | None = None, tokens: int = 32768) -> np.ndarray:
    """greedy_writes over (N, W) numpy rows, in chunks of rows of about equal length that hold at
    most `tokens` tokens (the attention's (B, H, T, T) scores grow with the square of the width),
    each chunk trimmed to its longest row.  Rows longer than the model's block -> False."""
    device = model.wte.weight.device
    out = np.zeros(len(length), dtype=bool)
    fits = np.flatnonzero(length - 1 <= model.config.block_size)
    order = fits[np.argsort(length[fits], kind="stable")]
    start = 0
    while start < len(order):
        n = max(tokens // int(length[order[start]]), 1)  # rows, were they all as short as the first
        longest = int(length[order[min(start + n, len(order)) - 1]])  # of those rows (sorted by length)
        chunk = order[start : start + max(tokens // longest, 1)]
        width = int(length[chunk].max())

        def part(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a[chunk, :width])).to(device)

        out[chunk] = greedy_writes(model, part(rows), torch.from_numpy(prompt_len[chunk]).to(device),
                                   torch.from_numpy(length[chunk]).to(device),
                                   None if pos is None else part(pos)).cpu().numpy()
        start += len(chunk)
    return out


@torch.no_grad()
def sample_stream(
    model: GPT,
    prompt: Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield sampled tokens one at a time (for streaming to a terminal).

    Uses the KV cache while the context fits in block_size; after that each
    token re-reads the last block_size tokens, exactly as nanoGPT's generate.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    device = model.wte.weight.device
    block = model.config.block_size
    seq = list(prompt)[-block:]
    cache = KVCache(model, 1, block, device, dtype=model.wte.weight.dtype)
    logits, _ = model(torch.tensor([seq], dtype=torch.long, device=device), cache=cache)
    cache.advance(len(seq))
    for _ in range(max_new_tokens):
        nxt = sample_next(logits[:, -1, :], temperature, top_k, generator)
        yield nxt
        seq.append(nxt)
        if cache.pos < block:
            logits, _ = model(torch.tensor([[nxt]], device=device), cache=cache)
            cache.advance(1)
        else:
            logits, _ = model(torch.tensor([seq[-block:]], device=device))


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> int:
    """Sample one token id from (1, V) logits with temperature and optional top-k."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())
