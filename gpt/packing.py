"""Less padding per step: a right-padded micro-batch cut into the parts the training step computes.

    row_lengths -> length_chunks | pack_rows -> batch_parts

A batch is padded to its longest row, so with problems of very different lengths (the
calculator's traces, scratchpads) most of a step's work is on padding.  Columns after a row's
last target cannot change any earlier position's loss (causal attention), so a batch can be
cut into parts, each with its share of the batch's targets, whose share-weighted mean loss is
the batch's mean loss, at less cost.  Two ways (TrainConfig.length_chunks, TrainConfig.pack):

  - length_chunks: rows sorted by length into k chunks, each trimmed to its longest row;
  - pack_rows: rows cut after their last target and packed end to end, one attention segment
    a problem (GPT.forward(..., segments=)).

Shapes: B rows, T columns; x is (B, T) tokens, or (B, T, 2) tokens and position ids; y (B, T)
targets, -1 where there is none.  A part is (tokens, targets, share, segment ids or None).
"""

from __future__ import annotations

import torch

from gpt.config import TrainConfig

Part = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | float", "torch.Tensor | None"]


def row_lengths(y: torch.Tensor) -> torch.Tensor:
    """(B, T) targets -> (B,) each row's length up to its last target: 1 + that index, 0 for none."""
    valid = y != -1
    return torch.where(valid.any(1), y.size(1) - valid.flip(1).int().argmax(1),
                       torch.zeros_like(valid[:, 0], dtype=torch.long))


def length_chunks(x: torch.Tensor, y: torch.Tensor, k: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]]:
    """Split a right-padded batch into k chunks of rows of similar length, each trimmed to its
    longest row, with each chunk's share of the batch's targets.

    sum_i share_i * mean_loss(chunk_i) is the batch's mean loss (see the module's docstring).
    Chunks with no targets are dropped (a batch with none at all stays whole: its loss is 0).
    """
    if k <= 1:
        return [(x, y, 1.0)]  # the default: the step is exactly what it was, at no extra cost
    valid = y != -1
    length = row_lengths(y)
    total = valid.sum().clamp(min=1)
    out = []
    for rows in length.argsort().tensor_split(k):
        w = int(length[rows].max()) if len(rows) else 0
        if w == 0:
            continue
        yc = y[rows, :w]
        out.append((x[rows, :w], yc, (yc != -1).sum() / total))
    return out or [(x, y, 1.0)]


def first_fit(length: list[int], width: int) -> list[list[int]]:
    """Rows of lengths 1..width into bins of `width` columns: longest first, each into the first
    bin with room (first-fit decreasing).  Rows of length 0 or over `width` are left out."""
    bins: list[list[int]] = []
    room: list[int] = []
    for r in sorted((r for r in range(len(length)) if 0 < length[r] <= width), key=lambda r: -length[r]):
        b = next((i for i, free in enumerate(room) if free >= length[r]), len(bins))
        if b == len(bins):
            bins.append([])
            room.append(width)
        bins[b].append(r)
        room[b] -= length[r]
    return bins


def _packed(x: torch.Tensor, y: torch.Tensor, length: list[int], bins: list[list[int]]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bins' rows end to end: (n_bins, W[, 2]) tokens, (n_bins, W) targets and segment ids,
    W the fullest bin's length.  Segment ids number a bin's problems 0, 1, ...; its padding gets
    an id of its own."""
    w = max(sum(length[r] for r in rows) for rows in bins)
    xp = x.new_zeros((len(bins), w, *x.shape[2:]))
    yp = y.new_full((len(bins), w), -1)
    seg = torch.empty((len(bins), w), dtype=torch.long, device=y.device)
    for i, rows in enumerate(bins):
        at = 0
        for j, r in enumerate(rows):
            n = length[r]
            xp[i, at : at + n], yp[i, at : at + n], seg[i, at : at + n] = x[r, :n], y[r, :n], j
            at += n
        seg[i, at:] = len(rows)
    return xp, yp, seg


def pack_rows(x: torch.Tensor, y: torch.Tensor, width: int = 0) -> list[Part]:
    """Pack a right-padded batch's rows end to end: (B, T[, 2]) tokens and (B, T) targets ->
    parts (tokens, targets, share of the batch's targets, segment ids or None), as length_chunks.

    Each row is cut after its last target (columns after it change no loss) and placed, longest
    first, in the first packed row of `width` columns (0: T) with room (first_fit).
    GPT.forward(..., segments=) lets no token see another segment and counts positions from
    each segment's start, so the parts' share-weighted mean loss is the batch's, computed with
    almost no padding. Attention costs width^2 a packed row whatever its problems, so rows
    longer than `width` are not packed: they make one more part, trimmed, one problem a row.
    Rows without targets are dropped; a batch with none at all stays as it is.
    """
    width = width or x.size(1)
    length = row_lengths(y).tolist()
    total = (y != -1).sum().clamp(min=1)
    long = [r for r in range(len(length)) if length[r] > width]
    bins = first_fit(length, width)
    parts: list[Part] = []
    if bins:
        xp, yp, seg = _packed(x, y, length, bins)
        parts.append((xp, yp, (yp != -1).sum() / total, seg))
    if long:
        rows = torch.tensor(long, device=y.device)
        yl = y[rows, : max(length[r] for r in long)]
        parts.append((x[rows, : yl.size(1)], yl, (yl != -1).sum() / total, None))
    return parts or [(x, y, 1.0, None)]


def batch_parts(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> list[Part]:
    """A micro-batch as the training step computes it: packed rows (train.pack) or length chunks,
    each part (tokens, targets, share of the batch's targets, segment ids or None)."""
    if cfg.pack:
        return pack_rows(x, y, cfg.pack_width)
    return [(*chunk, None) for chunk in length_chunks(x, y, cfg.length_chunks)]
