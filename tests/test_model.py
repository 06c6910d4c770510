import math

import pytest
import torch
import torch.nn.functional as F

from gpt.model import GPT, GPTConfig, masked_cross_entropy

CFG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32)


def naive_attention(attn, x):
    """One head at a time, explicit mask and softmax: the lecture's Head, looped."""
    B, T, C = x.shape
    H, D = attn.n_head, attn.head_size
    qkv = attn.c_attn(x)
    q, k, v = qkv.split(C, dim=2)
    outs = []
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for h in range(H):
        qh, kh, vh = (t[:, :, h * D:(h + 1) * D] for t in (q, k, v))
        w = qh @ kh.transpose(-2, -1) / math.sqrt(D)
        w = w.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        outs.append(w @ vh)
    return attn.c_proj(torch.cat(outs, dim=-1))


def test_batched_attention_equals_per_head_loop():
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    attn = model.blocks[0].attn
    x = torch.randn(3, 10, CFG.n_embd)
    torch.testing.assert_close(attn(x, model.pos, torch.arange(10)[None]), naive_attention(attn, x), atol=1e-5, rtol=1e-5)


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    idx = torch.randint(0, 11, (2, 12))
    other = idx.clone()
    other[:, 7:] = torch.randint(0, 11, (2, 5))
    a, _ = model(idx)
    b, _ = model(other)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_masked_loss_equals_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[-1, 2, 4], [-1, -1, 0]])
    by_hand = []
    for b in range(2):
        for t in range(3):
            if targets[b, t] >= 0:
                logp = logits[b, t] - torch.logsumexp(logits[b, t], dim=0)
                by_hand.append(-logp[targets[b, t]])
    torch.testing.assert_close(masked_cross_entropy(logits, targets), torch.stack(by_hand).mean())


def test_all_masked_batch_gives_zero_not_nan():
    model = GPT(CFG)
    idx = torch.randint(0, 11, (2, 5))
    _, loss = model(idx, torch.full((2, 5), -1))
    assert loss.item() == 0.0
    loss.backward()  # and gradients are finite zeros
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_tiny_batch_can_be_overfit():
    torch.manual_seed(0)
    model = GPT(CFG)
    idx = torch.randint(0, 11, (4, 12))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_weight_tying_and_param_count():
    model = GPT(CFG)
    assert model.lm_head.weight is model.wte.weight
    c = CFG
    per_block = 12 * c.n_embd**2 + 2 * c.n_embd  # attn + mlp matrices, two LayerNorm weights
    expected = c.vocab_size * c.n_embd + c.n_layer * per_block + c.n_embd
    assert model.num_params() == expected
    assert model.num_params(non_embedding=False) == expected + c.block_size * c.n_embd


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=8, n_head=4, n_embd=256))
    std = model.blocks[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(16)) < 0.001
    assert abs(model.blocks[0].attn.c_attn.weight.std().item() - 0.02) < 0.002


@pytest.mark.parametrize("bad", [dict(n_embd=30, n_head=4), dict(n_layer=0), dict(dropout=1.0), dict(vocab_size=-1)])
def test_config_is_validated(bad):
    with pytest.raises(ValueError):
        GPTConfig(**{**CFG.__dict__, **bad})


def test_sequence_longer_than_block_is_refused():
    model = GPT(CFG)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_sdpa_matches_manual_softmax_scale():
    # SDPA's default scale is 1/sqrt(D); we pass it explicitly: check both agree
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / math.sqrt(8))
    b = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(a, b)
