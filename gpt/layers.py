"""Interchangeable layers: norms, MLPs and projections, chosen once at construction.

    model.norm = layernorm | rmsnorm
    model.mlp  = gelu | swiglu | relu2
    model.qk_norm = on | off  (an RMSNorm over each head's queries and keys)
    model.rank = 0 | R        (projections as W = A @ B of rank R: LowRankLinear)
    model.share_norms         (one norm module for the whole model: SharedNorms)

Each variant is its own small class with the same call signature, so the
Block in gpt/model.py has no branches: `make_norms(config)`, `make_mlp(config)` and
`make_linear(config, ...)` pick the class.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F


class LowRankLinear(nn.Module):
    """A Linear(in, out) whose weight is the product W = A @ B of A (out, rank) and B (rank, in):
    rank * (in + out) weights instead of in * out.  x goes through B, then A, never through W."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool):
        super().__init__()
        self.a = nn.Parameter(torch.empty(out_features, rank))
        self.b = nn.Parameter(torch.empty(rank, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """W = A @ B (out, in): what a full Linear would hold (the tied O = Q^T reads it)."""
        return self.a @ self.b

    def reset(self, std: float) -> None:
        """Both factors N(0, s) with s^4 * rank = std^2, so that W's entries have std `std`, as a
        full Linear's would: factors of std 0.02 each would make W vanish (0.0004 * sqrt(rank))."""
        s = math.sqrt(std / math.sqrt(self.b.size(0)))
        nn.init.normal_(self.a, mean=0.0, std=s)
        nn.init.normal_(self.b, mean=0.0, std=s)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.b), self.a, self.bias)


def make_linear(config, in_features: int, out_features: int) -> nn.Module:
    """A projection: nn.Linear (its checkpoint keys unchanged), or of rank model.rank."""
    if config.rank:
        return LowRankLinear(in_features, out_features, config.rank, config.bias)
    return nn.Linear(in_features, out_features, bias=config.bias)



class RMSNorm(nn.Module):
    """x / rms(x) * weight (Zhang & Sennrich 2019): LayerNorm without centring or bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def make_norm(config, dim: int | None = None) -> nn.Module:
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return RMSNorm(dim)
    return nn.LayerNorm(dim, bias=config.bias)


def make_qk_norm(config) -> nn.Module:
    """Normalise each head's q and k before the dot product (Dehghani et al. 2023): it bounds
    the attention logits, which keeps high learning rates stable."""
    return RMSNorm(config.head_size) if config.qk_norm else nn.Identity()


class Norms:
    """A model's norms, one new module per call: `norms()` a residual-stream norm, `norms.qk()`
    a head's q or k norm (Identity when model.qk_norm is off)."""

    def __init__(self, config):
        self.config = config

    def __call__(self) -> nn.Module:
        return make_norm(self.config)

    def qk(self) -> nn.Module:
        return make_qk_norm(self.config)


class SharedNorms(Norms):
    """model.share_norms: every call returns the same module (one for the stream, one for q and k),
    so the whole model has one norm weight (and bias).  The sharing modules each keep their
    checkpoint keys, all naming the one tensor, as the tied lm_head and wte do."""

    def __init__(self, config):
        super().__init__(config)
        self.stream, self.heads = make_norm(config), make_qk_norm(config)

    def __call__(self) -> nn.Module:
        return self.stream

    def qk(self) -> nn.Module:
        return self.heads


def make_norms(config) -> Norms:
    return SharedNorms(config) if config.share_norms else Norms(config)


class GeluMLP(nn.Module):
    """GPT-2's MLP: Linear(C, H) -> GELU -> Linear(H, C), H = 4C unless model.mlp_hidden says."""

    def __init__(self, config):
        super().__init__()
        self.c_fc = make_linear(config, config.n_embd, config.mlp_width)
        self.c_proj = make_linear(config, config.mlp_width, config.n_embd)
        self.c_proj.RESIDUAL = True  # marks it for the 1/sqrt(2*n_layer) init
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class ReLU2MLP(GeluMLP):
    """Squared ReLU (So et al. 2021, Primer): same shapes as GeluMLP, relu(x)^2 activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.relu(self.c_fc(x)).square()))


class SwiGLU(nn.Module):
    """silu(x W) * (x V) -> W2 (Shazeer 2020).  Hidden width 8C/3 (rounded up to a multiple
    of 8) keeps the parameter count equal to the 4C GELU MLP's, so ablations compare like
    with like (model.mlp_hidden sets it instead)."""

    def __init__(self, config):
        super().__init__()
        hidden = config.mlp_width
        self.c_fc = make_linear(config, config.n_embd, 2 * hidden)  # gate and value, fused
        self.c_proj = make_linear(config, hidden, config.n_embd)
        self.c_proj.RESIDUAL = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(F.silu(gate) * value))


_MLP_CLASSES = {"gelu": GeluMLP, "swiglu": SwiGLU, "relu2": ReLU2MLP}


def make_mlp(config) -> nn.Module:
    return _MLP_CLASSES[config.mlp](config)
