"""The parameter savers (model.rank, model.tie_kv, model.tie_qo, model.share_norms, model.mlp_hidden), each against an
independent reference, and count_parameters, AdderBoard's unique-parameter count, on hand-built cases."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn as nn

from experiments.errors import UserError
from experiments.runspec import resolve_spec
from gpt.generate import greedy_batch
from gpt.layers import LowRankLinear
from gpt.model import GPT, GPTConfig, QueryTranspose, count_parameters, tied_names
from gpt.positions import make_positions
from helpers import overfit

BASE = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16, pos="none")
C, L = BASE.n_embd, BASE.n_layer
SAVERS = [dict(rank=3), dict(tie_kv=True), dict(tie_qo=True), dict(share_norms=True),
          dict(mlp_hidden=5), dict(mlp_hidden=7, mlp="swiglu"),
          dict(rank=2, tie_kv=True, tie_qo=True, share_norms=True)]

# a default model's checkpoint keys: every run trained before these options existed holds exactly these
DEFAULT_KEYS = ["wte.weight", "pos.rel.weight", "blocks.0.ln_1.weight", "blocks.0.attn.c_attn.weight",
                "blocks.0.attn.c_proj.weight", "blocks.0.ln_2.weight", "blocks.0.mlp.c_fc.weight",
                "blocks.0.mlp.c_proj.weight", "ln_f.weight", "lm_head.weight"]
BIASED_KEYS = ["wte.weight", "pos.wpe.weight"] + [
    f"blocks.{i}.{k}" for i in range(2) for k in (
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
        "attn.q_norm.weight", "attn.k_norm.weight", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
        "mlp.c_proj.weight", "mlp.c_proj.bias")] + ["ln_f.weight", "ln_f.bias", "lm_head.weight"]


def model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(dataclasses.replace(BASE, **kw))


def test_a_default_models_checkpoint_keys_are_unchanged():
    tiny = GPTConfig(vocab_size=13, block_size=40, n_layer=1, n_head=2, n_embd=12, pos="coupled_rel", max_pos=64)
    assert list(GPT(tiny).state_dict()) == DEFAULT_KEYS  # the add10-tiny preset's model
    biased = GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=8, bias=True, qk_norm=True, mlp="swiglu")
    assert list(GPT(biased).state_dict()) == BIASED_KEYS
    assert all(type(m) is nn.Linear for n, m in GPT(biased).named_modules() if n.endswith(("c_attn", "c_proj", "c_fc")))


def test_low_rank_linear_applies_w_equal_a_at_b():
    torch.manual_seed(1)
    lin = LowRankLinear(10, 7, rank=3, bias=True)
    lin.reset(0.5)
    nn.init.normal_(lin.bias)
    x = torch.randn(4, 5, 10)
    assert torch.allclose(lin(x), x @ (lin.a @ lin.b).T + lin.bias, atol=1e-6)
    assert lin.a.shape == (7, 3) and lin.b.shape == (3, 10) and count_parameters(lin) == 3 * (10 + 7) + 7


def test_low_rank_init_gives_w_the_std_of_a_full_linear():
    torch.manual_seed(2)
    lin = LowRankLinear(512, 512, rank=16, bias=False)
    lin.reset(0.02)
    assert abs(lin.weight.std().item() - 0.02) < 0.002


def test_rank_factorizes_every_attention_and_mlp_projection_and_nothing_else():
    m, full = model(rank=3), model()
    low = [n for n, mod in m.named_modules() if isinstance(mod, LowRankLinear)]
    assert low == [f"blocks.{i}.{k}" for i in range(L) for k in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    shapes = [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)]  # (in, out) of each
    saved = L * sum(i * o - 3 * (i + o) for i, o in shapes)
    assert count_parameters(full) - count_parameters(m) == saved
    assert type(m.lm_head) is nn.Linear and m.lm_head.weight is m.wte.weight


def reference_attention(x: torch.Tensor, wq, wk, wv, wo, n_head: int) -> torch.Tensor:
    """Causal multi-head attention written out: no SDPA, no module of the model's."""
    B, T, C = x.shape
    D = C // n_head
    q, k, v = ((x @ w.T).view(B, T, n_head, D).transpose(1, 2) for w in (wq, wk, wv))
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    return y @ wo.T


@pytest.mark.parametrize("tie_kv,tie_qo,rank", [(True, False, 0), (False, True, 0), (True, True, 0), (True, True, 4)])
def test_tied_attention_equals_the_hand_built_one(tie_kv, tie_qo, rank):
    """K = V: one projection W_kv serves both; O = Q^T: the output weight is W_q transposed."""
    m = model(tie_kv=tie_kv, tie_qo=tie_qo, rank=rank)
    attn = m.blocks[0].attn
    w = attn.c_attn.weight.detach()  # (2C or 3C, C); A @ B with a rank
    wq, wk = w[:C], w[C:2 * C]
    wv = wk if tie_kv else w[2 * C:]
    wo = wq.T if tie_qo else attn.c_proj.weight.detach()
    x = torch.randn(2, 9, C)
    got = attn(x, make_positions(BASE), torch.arange(9)[None])
    assert torch.allclose(got, reference_attention(x, wq, wk, wv, wo, BASE.n_head), atol=1e-5)
    assert w.shape[0] == (2 if tie_kv else 3) * C
    assert isinstance(attn.c_proj, QueryTranspose) == tie_qo


@pytest.mark.parametrize("option", ["tie_kv", "tie_qo"])
def test_each_tie_saves_one_c_by_c_matrix_a_layer(option):
    assert count_parameters(model()) - count_parameters(model(**{option: True})) == L * C * C


def test_tie_qo_saves_the_weight_once_under_c_attn():
    m = model(tie_qo=True)
    keys = list(m.state_dict())
    assert "blocks.0.attn.c_proj.weight" not in keys and "blocks.0.attn.c_attn.weight" in keys
    assert count_parameters(m) == sum(p.numel() for p in m.parameters())


def test_shared_norms_are_one_module_and_equal_separate_norms_with_equal_weights():
    shared, separate = model(share_norms=True, bias=True, qk_norm=True), model(bias=True, qk_norm=True)
    norms = [shared.ln_f] + [b.ln_1 for b in shared.blocks] + [b.ln_2 for b in shared.blocks]
    assert all(n is shared.ln_f for n in norms)
    assert all(b.attn.q_norm is b.attn.k_norm is shared.blocks[0].attn.q_norm for b in shared.blocks)
    with torch.no_grad():
        shared.ln_f.weight.uniform_(0.5, 1.5)
        shared.ln_f.bias.uniform_(-0.5, 0.5)
        shared.blocks[0].attn.q_norm.weight.uniform_(0.5, 1.5)
    separate.load_state_dict(shared.state_dict())  # every norm key, each the one shared tensor
    x = torch.randint(0, 13, (3, 10))
    assert torch.equal(shared(x)[0], separate(x)[0])
    # 2 per block + ln_f, weight and bias, become one; the 2 q/k norms a block become one
    saved = (2 * L + 1 - 1) * 2 * C + (2 * L - 1) * BASE.head_size
    assert count_parameters(separate) - count_parameters(shared) == saved


@pytest.mark.parametrize("mlp,hidden,weights", [
    ("gelu", 5, 2 * C * 5), ("relu2", 9, 2 * C * 9), ("swiglu", 7, 3 * C * 7),  # c_fc (C -> H, SwiGLU's twice), c_proj
])
def test_mlp_hidden_sets_the_mlps_width_and_nothing_else(mlp, hidden, weights):
    narrow, usual = model(mlp=mlp, mlp_hidden=hidden), model(mlp=mlp)
    usual_weights = {"swiglu": 3 * C * 48, "gelu": 2 * C * 4 * C, "relu2": 2 * C * 4 * C}[mlp]  # SwiGLU: 8C/3 -> 48
    assert count_parameters(usual) - count_parameters(narrow) == L * (usual_weights - weights)
    assert narrow.blocks[0].mlp.c_proj.weight.shape == (C, hidden)
    assert list(narrow.state_dict()) == list(usual.state_dict())  # same names, narrower tensors
    assert model(mlp=mlp, mlp_hidden=usual.config.mlp_width).config.mlp_width == usual.config.mlp_width


@pytest.mark.parametrize("kw", SAVERS, ids=str)
def test_every_saver_trains_and_decodes_as_it_recomputes(kw):
    m = model(**kw)
    x = torch.randint(0, 13, (4, 12))
    first, last = overfit(m, x, torch.roll(x, -1, dims=1), steps=30)
    assert last < 0.6 * first
    m.eval()
    prompts = torch.randint(0, 12, (3, 5))
    assert torch.equal(greedy_batch(m, prompts, 12, 8, use_cache=True), greedy_batch(m, prompts, 12, 8, use_cache=False))


def test_tied_names_group_every_shared_tensor():
    m = model(share_norms=True, tie_qo=True)
    assert sorted(map(sorted, tied_names(m))) == [
        ["blocks.0.ln_1.weight", "blocks.0.ln_2.weight", "blocks.1.ln_1.weight", "blocks.1.ln_2.weight", "ln_f.weight"],
        ["lm_head.weight", "wte.weight"]]


@pytest.mark.parametrize("kw,message", [
    (dict(rank=-1), "model.rank must be a non-negative integer"),
    (dict(rank=16), "model.rank=16 saves nothing at model.n_embd=16"),
    (dict(tie_kv="yes"), "model.tie_kv must be true or false"),
    (dict(share_norms=1), "model.share_norms must be true or false"),
    (dict(mlp_hidden=-1), "model.mlp_hidden must be a non-negative integer"),
    (dict(mlp_hidden=2.5), "model.mlp_hidden must be a non-negative integer"),
    (dict(rank=4, mlp_hidden=4), "model.rank=4 saves nothing in an MLP of model.mlp_hidden=4"),
])
def test_bad_saver_settings_are_refused_with_a_clear_line(kw, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(BASE, **kw)


def test_savers_are_set_from_the_command_line():
    spec = resolve_spec("addition", sets=["model.rank=4", "model.tie_kv=true", "model.tie_qo=true",
                                          "model.share_norms=true", "model.mlp_hidden=6"])
    assert (spec.model.rank, spec.model.tie_kv, spec.model.tie_qo, spec.model.share_norms) == (4, True, True, True)
    assert spec.model.mlp_width == 6
    with pytest.raises(UserError, match="model.rank"):
        resolve_spec("addition", sets=[f"model.rank={spec.model.n_embd}"])


# ---- count_parameters: AdderBoard's rule on hand-built modules -------------------------------------

class TiedEmbeddingOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight


class Sinusoidal(nn.Module):
    """Fixed positions: a buffer, free; one learned scale beside it, counted."""

    def __init__(self, T: int = 32, C: int = 6):
        super().__init__()
        pos = torch.arange(T)[:, None] / 10000 ** (torch.arange(0, C, 2) / C)
        self.register_buffer("table", torch.cat([pos.sin(), pos.cos()], dim=1))
        self.scale = nn.Parameter(torch.ones(1))


class ViewSharing(nn.Module):
    """Two Parameter objects over one memory: AdderBoard's data_ptr test counts it once."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 3))
        self.v = nn.Parameter(self.w.data)


@pytest.mark.parametrize("module,expected", [
    (TiedEmbeddingOutput(), 40),  # 10 x 4 once, not twice
    (LowRankLinear(12, 8, rank=2, bias=False), 2 * (12 + 8)),  # not 96
    (Sinusoidal(), 1),  # the table is free
    (ViewSharing(), 15),
    (nn.Linear(4, 3), 15),
])
def test_count_parameters_by_adderboards_rule(module, expected):
    assert count_parameters(module) == expected


def test_count_is_the_same_on_the_meta_device_and_rope_is_free():
    cfgs = [dataclasses.replace(BASE, **kw) for kw in [*SAVERS, dict(pos="rope"), dict(pos="learned")]]
    for cfg in cfgs:
        with torch.device("meta"):
            meta = count_parameters(GPT(cfg))
        assert meta == count_parameters(GPT(cfg)), cfg
    assert count_parameters(GPT(dataclasses.replace(BASE, pos="rope"))) == count_parameters(GPT(BASE))
    learned = GPT(dataclasses.replace(BASE, pos="learned"))  # learned positions are parameters: counted
    assert count_parameters(learned) == count_parameters(GPT(BASE)) + BASE.block_size * C


def test_default_count_equals_num_params_with_positions():
    for cfg in itertools.islice((dataclasses.replace(BASE, pos=p, max_pos=20) for p in ("learned", "coupled", "coupled_rel")), 3):
        m = GPT(cfg)
        assert count_parameters(m) == m.num_params(non_embedding=False)
        assert sum(v.numel() for v in m.state_dict().values()) == count_parameters(m) + cfg.vocab_size * C  # lm_head twice
