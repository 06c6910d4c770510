"""Interchangeable layers: norms and MLPs, chosen once at construction.

    model.norm = layernorm | rmsnorm
    model.mlp  = gelu | swiglu | relu2
    model.qk_norm = on | off  (an RMSNorm over each head's queries and keys)

Each variant is its own small class with the same call signature, so the
Block in gpt/model.py has no branches: `make_norm(config, dim)` and
`make_mlp(config)` pick the class.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F



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


class GeluMLP(nn.Module):
    """GPT-2's MLP: Linear(C, 4C) -> GELU -> Linear(4C, C)."""

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
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
    with like."""

    def __init__(self, config):
        super().__init__()
        hidden = -(-8 * config.n_embd // 3 // 8) * 8
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden, bias=config.bias)  # gate and value, fused
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.c_proj.RESIDUAL = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(F.silu(gate) * value))


_MLP_CLASSES = {"gelu": GeluMLP, "swiglu": SwiGLU, "relu2": ReLU2MLP}


def make_mlp(config) -> nn.Module:
    return _MLP_CLASSES[config.mlp](config)
