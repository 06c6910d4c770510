"""Model variants: each one against an independent reference, and every combination trains."""

import dataclasses
import itertools

import pytest
import torch

from gpt.generate import greedy_batch
from gpt.layers import RMSNorm
from gpt.model import GPT, GPTConfig
from gpt.positions import AbacusPositions, _rotate

DIGITS = tuple(range(10))  # token ids 0-9 are digits; 10.. are symbols
BASE = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16, abacus_digits=DIGITS)

COMBOS = list(itertools.product(("learned", "none", "rope", "abacus"), ("layernorm", "rmsnorm"),
                                ("gelu", "swiglu", "relu2"), (False, True), (False, True)))


@pytest.mark.parametrize("pos,norm,mlp,qk_norm,tie", COMBOS)
def test_every_combination_trains(pos, norm, mlp, qk_norm, tie):
    torch.manual_seed(0)
    cfg = dataclasses.replace(BASE, pos=pos, norm=norm, mlp=mlp, qk_norm=qk_norm, tie_weights=tie)
    model = GPT(cfg)
    x = torch.randint(0, 13, (4, 12))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first
    assert (model.lm_head.weight is model.wte.weight) == tie


def naive_abacus(row: list[int]) -> list[int]:
    """Index of each digit within its run of digits, counted from 1; 0 for other tokens."""
    out, run = [], 0
    for t in row:
        run = run + 1 if t in DIGITS else 0
        out.append(run)
    return out


def test_abacus_indices_match_reference_whole_and_chunked():
    torch.manual_seed(1)
    pos = AbacusPositions(BASE)
    idx = torch.randint(0, 13, (16, 20))
    want = torch.tensor([naive_abacus(r) for r in idx.tolist()])
    assert torch.equal(pos.indices(idx), want)
    # decoding feeds chunks: the carried run length must continue a number across the cut
    carry = torch.zeros(16, dtype=torch.long)
    parts = []
    for a, b in ((0, 7), (7, 8), (8, 20)):
        run = pos.indices(idx[:, a:b], carry)
        carry = run[:, -1]
        parts.append(run)
    assert torch.equal(torch.cat(parts, 1), want)


def test_abacus_offset_only_in_training_and_a_function_of_the_tokens():
    pos = AbacusPositions(BASE)
    idx = torch.tensor([[1, 2, 3, 10, 4, 5, 11]])
    pos.eval()
    assert torch.equal(pos.embed(idx, 0), pos.wpe(torch.tensor([[1, 2, 3, 0, 1, 2, 0]])))
    pos.train()
    a, b = pos.embed(idx, 0), pos.embed(idx, 0)
    assert torch.equal(a, b)  # no RNG: the same tokens get the same offset
    offsets = {int(((r * pos.mult[:7]).sum() % (pos.max_offset + 1)).item())
               for r in torch.randint(0, 13, (200, 7))}
    assert len(offsets) > pos.max_offset // 2  # and different sequences get different offsets


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(2)
    cfg = dataclasses.replace(BASE, pos="rope")
    model = GPT(cfg)
    q, k = torch.randn(1, 1, 1, cfg.head_size), torch.randn(1, 1, 1, cfg.head_size)
    cos, sin = model.pos.cos, model.pos.sin

    def score(m: int, n: int) -> float:
        return float((_rotate(q, cos[m:m + 1], sin[m:m + 1]) * _rotate(k, cos[n:n + 1], sin[n:n + 1])).sum())

    assert score(5, 2) == pytest.approx(score(15, 12), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    # a rotation keeps norms
    assert float(_rotate(q, cos[7:8], sin[7:8]).norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_rmsnorm_matches_formula():
    torch.manual_seed(3)
    norm = RMSNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 8)
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), want)


def test_swiglu_keeps_the_parameter_count():
    gelu = GPT(dataclasses.replace(BASE, n_embd=96, n_head=4)).num_params()
    swiglu = GPT(dataclasses.replace(BASE, n_embd=96, n_head=4, mlp="swiglu")).num_params()
    assert abs(swiglu - gelu) / gelu < 0.02


@pytest.mark.parametrize("pos", ["learned", "none", "rope", "abacus"])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_cached_decoding_equals_full_recompute(pos, qk_norm):
    torch.manual_seed(4)
    model = GPT(dataclasses.replace(BASE, pos=pos, qk_norm=qk_norm)).eval()
    prompts = torch.randint(0, 13, (9, 6))
    fast = greedy_batch(model, prompts, end_id=12, max_new_tokens=10, use_cache=True)
    slow = greedy_batch(model, prompts, end_id=12, max_new_tokens=10, use_cache=False)
    assert torch.equal(fast, slow)


def test_bad_variant_names_are_rejected():
    for bad in ({"pos": "alibi"}, {"norm": "batchnorm"}, {"mlp": "tanh"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(BASE, **bad)
    with pytest.raises(ValueError, match="abacus_digits"):
        GPT(dataclasses.replace(BASE, pos="abacus", abacus_digits=()))


def test_checkpoints_from_before_the_position_module_still_load():
    model = GPT(BASE)
    state = {("wpe.weight" if k == "pos.wpe.weight" else k): v for k, v in model.state_dict().items()}
    fresh = GPT(BASE)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.pos.wpe.weight, model.pos.wpe.weight)
