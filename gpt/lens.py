"""A GPT as a TransformerLens HookedTransformer: the same function, with TransformerLens's hooks.

    hooked = to_hooked_transformer(model, transformer_lens)   # experiments: Run.to_transformer_lens()
    logits, cache = hooked.run_with_cache(tokens)             # the model's logits, every activation

Every option maps onto one that TransformerLens has, with the model's own weights:

    pos=learned -> positional_embedding_type "standard", W_pos the learned vectors
    pos=none    -> "standard" with W_pos all zeros (TransformerLens has no position-free setting)
    pos=rope    -> "rotary" over the whole head, halves paired (GPT-NeoX's layout, as gpt/positions.py)
    norm        -> "LN" (bias zero when model.bias is off) or "RMS", each norm's own eps
    mlp         -> act_fn gelu | relu2, or swiglu as a gated MLP of silu
    qk_norm     -> use_qk_norm, which TransformerLens applies in its grouped-query attention only:
                   n_key_value_heads = n_head, one key and value head per query head
    tie_weights -> W_U a copy of W_E
    the parameter savers (rank, tie_kv, tie_qo, share_norms) -> their full weights, materialised

What has no counterpart is refused, naming the option (`unsupported`): position ids that come
with the data (TransformerLens numbers a row's tokens 0, 1, 2, ... itself), and SwiGLU with
biases (its gated MLP has no bias before the gate).  The hooked model holds copies: changing it
leaves the GPT as it was.

TransformerLens is an optional extra; this module never imports it.  The caller hands the module
in, so that whoever calls says which extra to install when it is missing (experiments/load.py).
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from gpt.config import GIVEN, GPTConfig
from gpt.model import GPT, Block
from gpt.positions import ROPE_BASE

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

POSITIONS = {"learned": "standard", "none": "standard", "rope": "rotary"}


class Unsupported(ValueError):
    """A model option TransformerLens cannot express; the message names it."""


def unsupported(config: GPTConfig) -> str | None:
    """The first option of config that a HookedTransformer cannot express, as one line; None if none."""
    if config.pos in GIVEN:
        return (f"model.pos={config.pos} reads position ids given with the tokens; "
                "TransformerLens numbers a row's tokens 0, 1, 2, ... itself")
    if config.mlp == "swiglu" and config.bias:
        return "model.mlp=swiglu with model.bias=true: TransformerLens's gated MLP has no bias before its gate"
    return None


def lens_config(config: GPTConfig) -> dict[str, Any]:
    """The HookedTransformerConfig arguments of a model with this config."""
    if (reason := unsupported(config)) is not None:
        raise Unsupported(reason)
    act_fn, d_mlp = {"gelu": "gelu", "relu2": "relu2", "swiglu": "silu"}[config.mlp], config.mlp_width
    args = dict(d_model=config.n_embd, d_head=config.head_size, n_heads=config.n_head, n_layers=config.n_layer,
                n_ctx=config.block_size, d_vocab=config.vocab_size, d_mlp=d_mlp, act_fn=act_fn,
                gated_mlp=config.mlp == "swiglu", normalization_type="RMS" if config.norm == "rmsnorm" else "LN",
                positional_embedding_type=POSITIONS[config.pos], default_prepend_bos=False)
    if config.pos == "rope":
        args.update(rotary_dim=config.head_size, rotary_adjacent_pairs=False, rotary_base=ROPE_BASE)
    if config.qk_norm:
        args.update(use_qk_norm=True, n_key_value_heads=config.n_head)
    return args


def norm_state(norm: nn.Module) -> dict[str, torch.Tensor]:
    """A LayerNorm or RMSNorm as TransformerLens's w (and b: zeros for a LayerNorm without one)."""
    state = {"w": norm.weight}
    if isinstance(norm, nn.LayerNorm):
        state["b"] = norm.bias if norm.bias is not None else torch.zeros_like(norm.weight)
    return state


def heads_in(wt: torch.Tensor, bias: torch.Tensor | None, H: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A projection into the heads, as x @ wt + bias with wt (C_in, C) -> W (H, C_in, D) and b (H, D):
    head h owns output channels h*D .. h*D + D - 1, as CausalSelfAttention's view(B, T, H, D) has it."""
    C_in, C = wt.shape
    b = bias if bias is not None else wt.new_zeros(C)
    return wt.reshape(C_in, H, C // H).permute(1, 0, 2), b.reshape(H, C // H)


def attention_state(block: Block, config: GPTConfig) -> dict[str, torch.Tensor]:
    """One block's attention as W_Q, W_K, W_V (H, C, D), W_O (H, D, C) and their biases."""
    attn, C, H = block.attn, config.n_embd, config.n_head
    # the model's own split of c_attn's outputs makes q, k, v (with model.tie_kv, k and v are one)
    q, k, v = attn.split(attn.c_attn.weight.t()[None], C)  # each (1, C_in, C)
    b = attn.c_attn.bias
    bq, bk, bv = attn.split(b[None, None], C) if b is not None else (None, None, None)
    state = {}
    for name, wt, bias in (("Q", q, bq), ("K", k, bk), ("V", v, bv)):
        state[f"W_{name}"], state[f"b_{name}"] = heads_in(wt[0], None if bias is None else bias[0, 0], H)
    proj = attn.c_proj  # nn.Linear, LowRankLinear or QueryTranspose: each has its full weight (C, C)
    state["W_O"] = proj.weight.t().reshape(H, C // H, C)
    state["b_O"] = proj.bias if proj.bias is not None else proj.weight.new_zeros(C)
    if config.qk_norm:
        state["q_norm.w"], state["k_norm.w"] = attn.q_norm.weight, attn.k_norm.weight
    return state


def mlp_state(block: Block, config: GPTConfig) -> dict[str, torch.Tensor]:
    """One block's MLP as W_in (C, d_mlp), W_out (d_mlp, C), their biases, and W_gate for SwiGLU."""
    fc, proj = block.mlp.c_fc, block.mlp.c_proj
    w_in = fc.weight.t()  # (C, d_mlp), or (C, 2 * hidden) for SwiGLU: gate, then value
    state = {"W_out": proj.weight.t(),
             "b_out": proj.bias if proj.bias is not None else proj.weight.new_zeros(config.n_embd)}
    if config.mlp == "swiglu":  # silu(x W_gate) * (x W_in); unsupported() refused biases here
        state["W_gate"], state["W_in"] = w_in.chunk(2, dim=1)
        state["b_in"] = w_in.new_zeros(w_in.size(1) // 2)
    else:
        state["W_in"] = w_in
        state["b_in"] = fc.bias if fc.bias is not None else w_in.new_zeros(w_in.size(1))
    return state


def lens_state(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under TransformerLens's names, each a full matrix (savers materialised)."""
    config = model.config
    state = {"embed.W_E": model.wte.weight}
    if config.pos != "rope":  # rotary has no W_pos; pos=none adds zeros
        wpe = getattr(model.pos, "wpe", None)
        state["pos_embed.W_pos"] = wpe.weight if wpe is not None else model.wte.weight.new_zeros(config.block_size,
                                                                                                 config.n_embd)
    for i, block in enumerate(model.blocks):
        parts = {"ln1": norm_state(block.ln_1), "ln2": norm_state(block.ln_2),
                 "attn": attention_state(block, config), "mlp": mlp_state(block, config)}
        state.update({f"blocks.{i}.{part}.{k}": v for part, values in parts.items() for k, v in values.items()})
    state.update({f"ln_final.{k}": v for k, v in norm_state(model.ln_f).items()})
    state["unembed.W_U"] = model.lm_head.weight.t()
    state["unembed.b_U"] = model.lm_head.weight.new_zeros(config.vocab_size)
    return {k: v.detach() for k, v in state.items()}


def norm_pairs(model: GPT, hooked: HookedTransformer) -> list[tuple[nn.Module, nn.Module]]:
    """(the GPT's norm, the hooked model's) for every norm, q and k norms included."""
    pairs = [(model.ln_f, hooked.ln_final)]
    for ours, theirs in zip(model.blocks, hooked.blocks):
        pairs += [(ours.ln_1, theirs.ln1), (ours.ln_2, theirs.ln2)]
        if model.config.qk_norm:
            pairs += [(ours.attn.q_norm, theirs.attn.q_norm), (ours.attn.k_norm, theirs.attn.k_norm)]
    return pairs


def grouped_name(name: str, params: dict[str, nn.Parameter]) -> str:
    """name, or its grouped-query form: the attention that qk_norm needs keeps K and V as _W_K, _b_K ..."""
    module, _, last = name.rpartition(".")
    grouped = f"{module}._{last}"
    return grouped if last in ("W_K", "W_V", "b_K", "b_V") and grouped in params else name


def to_hooked_transformer(model: GPT, transformer_lens: ModuleType) -> HookedTransformer:
    """A HookedTransformer (transformer_lens, the module: 3.x, which has the class) computing what
    model computes, on its device and in its dtype; Unsupported names an option it cannot express."""
    w = model.wte.weight
    cfg = transformer_lens.HookedTransformerConfig(**lens_config(model.config), device=str(w.device), dtype=w.dtype,
                                                   init_weights=False)  # every weight is written below
    with warnings.catch_warnings():  # 3.x warns that 4.0 drops the class; it is the one this builds
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        hooked = transformer_lens.HookedTransformer(cfg)
    params = dict(hooked.named_parameters())
    state = {grouped_name(name, params): value for name, value in lens_state(model).items()}
    if state.keys() != params.keys():  # a TransformerLens whose names differ: none may stay unwritten
        raise RuntimeError(f"TransformerLens's parameters differ from the converted ones: "
                           f"{sorted(params.keys() ^ state.keys())}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    for ours, theirs in norm_pairs(model, hooked):  # one cfg.eps for all; LayerNorm 1e-5, RMSNorm 1e-6 here
        theirs.eps = ours.eps
    return hooked.eval()
