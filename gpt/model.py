"""The GPT: a decoder-only transformer, in reading order.

    GPTConfig -> CausalSelfAttention -> Block -> GPT

The model variants (positions, norms, MLPs, projections) live in their own modules and are picked at
construction: position encodings in gpt/positions.py, norms, MLPs and low-rank projections in
gpt/layers.py; the tied K = V and O = Q^T here (split_qkv, split_tied_kv, QueryTranspose).

Shapes use B (batch), T (time), C (n_embd), H (n_head), D (head_size = C // H),
V (vocab_size).  The model knows nothing about tasks: it maps token ids to
next-token logits and, given targets, to a cross-entropy loss in which
positions with target -1 are ignored.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt.config import GPTConfig
from gpt.layers import LowRankLinear, Norms, make_linear, make_mlp, make_norms
from gpt.positions import make_positions

IGNORE_INDEX = -1


def split_qkv(h: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """c_attn's (B, T, 3C) output -> q, k, v."""
    q, k, v = h.split(C, dim=2)
    return q, k, v


def split_tied_kv(h: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """model.tie_kv: c_attn's (B, T, 2C) output -> q, and one projection as both k and v."""
    q, kv = h.split(C, dim=2)
    return q, kv, kv


class QueryTranspose(nn.Module):
    """model.tie_qo: the output projection is W_Q^T, the query rows of c_attn's weight transposed
    (with a bias of its own when model.bias).  It holds c_attn in a tuple, not as a submodule, so
    the shared weight is saved and counted once, under c_attn."""

    def __init__(self, c_attn: nn.Module, n_embd: int, bias: bool):
        super().__init__()
        self.source = (c_attn,)
        self.n_embd = n_embd
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """W_Q^T (C, C): what a full Linear would hold (gpt/lens.py reads it, as it reads
        LowRankLinear's A @ B)."""
        return self.source[0].weight[: self.n_embd].t()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.linear(y, self.weight, self.bias)


def make_out_proj(config: GPTConfig, c_attn: nn.Module) -> nn.Module:
    if config.tie_qo:
        return QueryTranspose(c_attn, config.n_embd, config.bias)
    proj = make_linear(config, config.n_embd, config.n_embd)
    proj.RESIDUAL = True  # marks it for the 1/sqrt(2*n_layer) init
    return proj


class CausalSelfAttention(nn.Module):
    """All heads at once: heads are a batch dimension of one SDPA call.

    softmax(q k^T / sqrt(head_size)) v, with a causal mask.  An optional
    KVCache (see gpt/generate.py) lets decoding feed one token at a time.
    Given a list `attention`, it computes the softmax itself instead of calling the fused
    kernel (which never materialises the weights) and appends them to the list.
    """

    def __init__(self, config: GPTConfig, norms: Norms | None = None):
        super().__init__()
        norms = norms or make_norms(config)
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.c_attn = make_linear(config, config.n_embd, (2 if config.tie_kv else 3) * config.n_embd)
        self.split = split_tied_kv if config.tie_kv else split_qkv
        self.c_proj = make_out_proj(config, self.c_attn)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.q_norm, self.k_norm = norms.qk(), norms.qk()  # Identity when off

    def forward(self, x: torch.Tensor, positions: nn.Module, index: torch.Tensor, cache=None,
                layer: int = 0, attention: list[torch.Tensor] | None = None,
                pos_ids: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """index (1 or B, T): each token's position.  bias (B, H or 1, T, S): added to the
        attention scores (model.pos=coupled_rel, packed rows), -inf where a key is hidden, the
        causal mask included (GPT.forward makes it once for every layer), or None."""
        B, T, C = x.shape
        q, k, v = self.split(self.c_attn(x), C)
        # (B, T, C) -> (B, H, T, D): the heads become a batch dimension
        q = self.q_norm(q.view(B, T, self.n_head, self.head_size)).transpose(1, 2)
        k = self.k_norm(k.view(B, T, self.n_head, self.head_size)).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)
        q, k = positions.rotate(q, k, index, pos_ids)  # RoPE rotates; every other encoding returns them as is
        scale = 1.0 / math.sqrt(self.head_size)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, T_past + T, D)
        if attention is not None:  # recording: the explicit softmax, whose weights make y
            y, att = explicit_attention(q, k, v, scale, self.dropout if self.training else 0.0, bias)
            attention.append(att)
        elif bias is not None:  # a float mask: the bias where a key is visible, -inf where not (causal included)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale,
                                               dropout_p=self.dropout if self.training else 0.0)
        elif cache is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0, scale=scale
            )
        else:
            # a chunk of T new tokens sees all past tokens and the causal part of itself
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask(T), scale=scale)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, norms: Norms | None = None):
        super().__init__()
        norms = norms or make_norms(config)
        self.ln_1 = norms()
        self.attn = CausalSelfAttention(config, norms)
        self.ln_2 = norms()
        self.mlp = make_mlp(config)

    def forward(self, x: torch.Tensor, positions: nn.Module, index: torch.Tensor, cache=None,
                layer: int = 0, attention: list[torch.Tensor] | None = None,
                pos_ids: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), positions, index, cache, layer, attention, pos_ids, bias)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos = make_positions(config)
        self.drop = nn.Dropout(config.dropout)
        norms = make_norms(config)  # a new norm per call, or (model.share_norms) one for all
        self.blocks = nn.ModuleList(Block(config, norms) for _ in range(config.n_layer))
        self.ln_f = norms()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # checkpoints written before the position encodings moved into self.pos
        self._register_load_state_dict_pre_hook(rename_legacy_keys)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2: N(0, 0.02), and residual projections scaled by 1/sqrt(2 * n_layer)
        # so the residual stream's variance does not grow with depth.
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if getattr(module, "RESIDUAL", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, LowRankLinear):
            module.reset(0.02 / math.sqrt(2 * self.config.n_layer) if getattr(module, "RESIDUAL", False) else 0.02)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (as nanoGPT reports).

        The token embedding is counted because (by default) it is tied to lm_head."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for p in self.pos.parameters())
        return n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None,
        attention: list[torch.Tensor] | None = None, segments: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) int64 -> logits (B, T, V); loss is a scalar when targets are given.

        idx may also be (B, T, 2): token ids and their position ids, for the encodings whose
        ids come with the data (model.pos=abacus|coupled|coupled_rope); the others ignore the ids.

        With a cache, positions continue from cache.pos and only the last
        position's logits are returned (B, 1, V).

        attention: a list to record the attention weights in.  Each layer appends its
        (B, H, T, T_keys) softmax probabilities, computed explicitly in this very forward pass;
        None (the default, and all that training uses) keeps the fused SDPA kernel.

        segments (B, T) int: packed rows (gpt/packing.py's pack_rows), several problems per row.
        A token attends only to earlier tokens of its own segment, and its position counts from
        its segment's first token, so each problem is computed as if it had a row of its own.
        """
        idx, pos_ids = (idx[..., 0], idx[..., 1]) if idx.dim() == 3 else (idx, None)
        B, T = idx.shape
        start = 0 if cache is None else cache.pos
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of length {start + T} exceeds block_size {self.config.block_size}"
            )
        index = torch.arange(start, start + T, device=idx.device)[None]  # (1, T)
        if segments is not None:
            if cache is not None:
                raise ValueError("packed rows (segments) are for training; decoding takes one problem per row")
            index = segment_positions(segments)  # (B, T)
        x = self.drop(self.wte(idx) + self.pos.embed(idx, index, cache, pos_ids))  # (B, T, C)
        key_ids = pos_ids if cache is None or pos_ids is None else cache.update_ids(pos_ids)  # (B, S)
        hide = None if T == 1 else ~causal_mask(T, start + T, idx.device)  # (T, S); one new token sees every key
        bias = self.pos.attn_bias(pos_ids, key_ids, hide)  # (B, H, T, S) or None: the same in every layer
        if segments is not None:
            bias = segment_bias(segments, bias, hide)  # (B, H or 1, T, T)
        for i, block in enumerate(self.blocks):
            x = block(x, self.pos, index, cache, i, attention, pos_ids, bias)
        x = self.ln_f(x)
        if targets is None:
            if cache is not None:
                x = x[:, -1:, :]
            return self.lm_head(x), None
        logits = self.lm_head(x)  # (B, T, V)
        return logits, masked_cross_entropy(logits, targets)


def count_parameters(module: nn.Module) -> int:
    """Unique parameters, by AdderBoard's rule: a tensor that several modules use counts once
    (the tied lm_head and wte, shared norms, O = Q^T reading c_attn's weight); buffers (RoPE's
    tables, any fixed or sinusoidal encoding) are not parameters and count nothing; learned
    position vectors are parameters and count.  Distinct parameters over one memory count once,
    as AdderBoard's data_ptr test has it; on the meta device (no memory) identity decides."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():  # a Parameter shared by several modules comes once
        key = id(p) if p.is_meta else p.data_ptr()
        if key not in seen:
            seen.add(key)
            total += p.numel()
    return total


def tied_names(module: nn.Module) -> list[list[str]]:
    """Groups of state-dict names that hold one tensor (wte and lm_head; with model.share_norms
    every norm's): a file format that stores each tensor once keeps one name of each group."""
    groups: dict[int, list[str]] = {}
    for name, t in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def causal_mask(T: int, S: int, device) -> torch.Tensor:
    """(T, S) bool: query i (token S - T + i) sees keys 0 .. S - T + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) segment ids, equal along each segment -> each token's index within its segment."""
    B, T = segments.shape
    t = torch.arange(T, device=segments.device).expand(B, T)
    new = torch.ones_like(segments, dtype=torch.bool)
    new[:, 1:] = segments[:, 1:] != segments[:, :-1]  # a segment's first token
    first = torch.where(new, t, torch.zeros_like(t)).cummax(dim=1).values  # (B, T) its segment's start
    return t - first


def segment_bias(segments: torch.Tensor, bias: torch.Tensor | None, hide: torch.Tensor | None) -> torch.Tensor:
    """Hide every key of another segment, and every key `hide` (T, T) hides (the causal mask):
    -inf there, added to the encoding's bias (or 0)."""
    other = segments[:, :, None] != segments[:, None, :]
    other = (other if hide is None else other | hide)[:, None]  # (B, 1, T, T)
    base = torch.zeros(other.shape, device=segments.device) if bias is None else bias
    return base.masked_fill(other, float("-inf"))


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                       dropout_p: float = 0.0, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What SDPA computes, step by step, so the weights can be kept: q (B, H, T, D) and
    k, v (B, H, S, D) -> y (B, H, T, D) and att (B, H, T, S), each row of att summing to 1.

    Query i is token S - T + i (with a KV cache, S - T tokens came before this chunk): it sees
    keys 0 .. S - T + i."""
    T, S = q.size(-2), k.size(-2)
    visible = causal_mask(T, S, q.device)  # (T, S)
    scores = (q @ k.transpose(-2, -1)).float() * scale  # (B, H, T, S); the softmax in float32
    if bias is not None:
        scores = scores + bias.float()
    att = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
    y = F.dropout(att, dropout_p).type_as(v) @ v  # (B, H, T, D)
    return y, att


def rename_legacy_keys(state_dict, prefix: str = "", *args) -> None:
    """In place: checkpoints from before the position encodings moved into GPT.pos."""
    if prefix + "wpe.weight" in state_dict:
        state_dict[prefix + "pos.wpe.weight"] = state_dict.pop(prefix + "wpe.weight")


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose target is not -1.

    F.cross_entropy returns NaN (0/0) when every target is ignored; a batch
    with nothing to learn should contribute 0, not poison the run.
    """
    flat_t = targets.reshape(-1)
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), flat_t, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    count = (flat_t != IGNORE_INDEX).sum().clamp(min=1)
    return total / count
