"""Model variants: each one against an independent reference, and every combination trains."""

import dataclasses
import itertools

import pytest
import torch

from gpt import layers, positions
from gpt.config import GIVEN, MLPS, NORMS, POSITIONS, SLOTTED
from gpt.generate import KVCache, greedy_batch, next_position
from gpt.layers import RMSNorm
from gpt.model import GPT, GPTConfig
from gpt.positions import _rotate
from helpers import overfit

BASE = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16, max_pos=30)
POS = POSITIONS
# qk_norm and tied weights in two of their four pairings: each is on once and off once with every other choice
COMBOS = [(*c, qk, tie) for c in itertools.product(POS, ("layernorm", "rmsnorm"), ("gelu", "swiglu", "relu2"))
          for qk, tie in ((False, True), (True, False))]


def slots(pos: str) -> int:
    """Slot ids (< 0) for the encodings that embed them, so that every test covers them too."""
    return 3 if pos in SLOTTED else 0


def with_ids(cfg: GPTConfig, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """x (B, T) -> the model's input: with random position ids (slots included) for the encodings that take them."""
    if cfg.pos not in GIVEN:
        return x
    ids = torch.randint(-cfg.pos_slots, cfg.max_pos + 1, x.shape, generator=torch.Generator().manual_seed(seed))
    return torch.stack([x, ids], dim=-1)


@pytest.mark.parametrize("pos,norm,mlp,qk_norm,tie", COMBOS)
def test_every_combination_trains(pos, norm, mlp, qk_norm, tie):
    torch.manual_seed(0)
    cfg = dataclasses.replace(BASE, pos=pos, pos_slots=slots(pos), norm=norm, mlp=mlp, qk_norm=qk_norm, tie_weights=tie)
    model = GPT(cfg)
    x = torch.randint(0, 13, (4, 12))
    y = torch.roll(x, -1, dims=1)
    first, last = overfit(model, with_ids(cfg, x), y)
    assert last < 0.6 * first
    assert (model.lm_head.weight is model.wte.weight) == tie


@pytest.mark.parametrize("pos,norm,mlp,qk_norm", [c[:4] for c in COMBOS])
def test_training_mode_is_causal(pos, norm, mlp, qk_norm):
    """In train mode (where the old Abacus drew its offset from the whole row), changing a later
    token, and its position id, leaves every earlier logit exactly as it was."""
    torch.manual_seed(5)
    cfg = dataclasses.replace(BASE, pos=pos, pos_slots=slots(pos), norm=norm, mlp=mlp, qk_norm=qk_norm)
    model = GPT(cfg).train()
    x = with_ids(cfg, torch.randint(0, 13, (3, 16)))
    for t in (15, 9, 4):
        changed = x.clone()
        if x.dim() == 2:
            changed[:, t:] = (changed[:, t:] + 1) % 13
        else:
            changed[:, t:, 0] = (changed[:, t:, 0] + 1) % 13
            changed[:, t:, 1] = (changed[:, t:, 1] + 7) % (cfg.max_pos + 1)
        a, _ = model(x, torch.zeros(3, 16, dtype=torch.long))  # with targets: the training path
        b, _ = model(changed, torch.zeros(3, 16, dtype=torch.long))
        assert torch.equal(a[:, :t], b[:, :t]), t
        assert not torch.equal(a[:, t:], b[:, t:])  # the change did reach the model


def test_slots_get_their_own_bias_from_any_distance_and_their_own_vector():
    """A key in slot s (id -s): every positioned query sees it, however far (its own learned bias),
    and learned ids embed it in its own row; slots never collide with positions or "none"."""
    cfg = dataclasses.replace(BASE, pos="coupled_rel", pos_slots=2)
    rel = GPT(cfg).pos
    with torch.no_grad():
        rel.rel.weight.copy_(torch.arange(rel.rel.num_embeddings, dtype=torch.float32)[:, None].expand(-1, 2))
    q = torch.tensor([[1, 9, 30, 0, -1]])
    k = torch.tensor([[-1, -2, 0, 9, 8]])
    bias = rel.attn_bias(q, k)[0, 0]  # (T, S): the bucket number, per the weights above
    none, c = 2 * rel.clip + 1, rel.clip
    assert bias[:, 0].tolist() == [none + 1, none + 1, none + 1, none, none]  # slot 1 from any position
    assert bias[:, 1].tolist() == [none + 2, none + 2, none + 2, none, none]
    assert bias[1, 3] == c and bias[1, 4] == c + 1 and bias[0, 3] == float("-inf")  # positions: by difference
    learned = GPT(dataclasses.replace(BASE, pos="coupled", pos_slots=2)).pos
    rows = learned.embed(None, torch.arange(5)[None], None, torch.tensor([[-2, -1, 0, 5, BASE.max_pos]]))
    assert torch.equal(rows[0], learned.wpe.weight[[BASE.max_pos + 2, BASE.max_pos + 1, 0, 5, BASE.max_pos]])
    with pytest.raises(ValueError, match="no slot position ids"):
        dataclasses.replace(BASE, pos="coupled_rope", pos_slots=1)


@pytest.mark.parametrize("pos", ["coupled_local", "coupled_rel"])
def test_coupled_local_tokens_without_a_position_do_not_read_the_number(pos):
    """Under coupled_local, "*" (id 0) and the multiplier's slots (ids -2, -1) compute the same
    whatever digits, and however many, come before them, so every digit reading them sees the
    same thing at every length.  Under coupled_rel they read the whole number: the reference
    that the test can tell the two apart."""
    torch.manual_seed(3)
    model = GPT(dataclasses.replace(BASE, pos=pos, pos_slots=2)).eval()
    star, b1, b0 = 10, 4, 5

    def tail(digits: list[int]) -> torch.Tensor:
        """a's digits (ids n..1), "*", then b's two digits in slots -2, -1: the last three outputs."""
        x = torch.tensor([[*digits, star, b1, b0]])
        ids = torch.tensor([[*range(len(digits), 0, -1), 0, -2, -1]])
        return model(torch.stack([x, ids], dim=-1))[0][0, -3:]

    short, other, longer = tail([1, 2, 3]), tail([7, 0, 9]), tail([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3])
    if pos == "coupled_local":
        torch.testing.assert_close(short, other, rtol=0, atol=1e-6)
        torch.testing.assert_close(short, longer, rtol=0, atol=1e-6)
    else:
        assert (short - other).abs().max() > 1e-3 and (short - longer).abs().max() > 1e-3


def test_given_positions_embed_the_ids_they_are_given():
    model = GPT(dataclasses.replace(BASE, pos="coupled")).eval()
    x = torch.tensor([[1, 2, 10, 3, 11]])
    ids = torch.tensor([[2, 1, 0, 1, 1]])
    assert torch.equal(model.pos.embed(x, torch.arange(5)[None], None, ids), model.pos.wpe(ids))
    with pytest.raises(ValueError, match="position ids"):
        model(x)  # tokens alone: the ids must come with the data


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


@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize("qk_norm", [False, True])
def test_cached_decoding_equals_full_recompute(pos, qk_norm):
    torch.manual_seed(4)
    cfg = dataclasses.replace(BASE, pos=pos, pos_slots=slots(pos), qk_norm=qk_norm)
    model = GPT(cfg).eval()
    prompts = torch.randint(0, 13, (9, 6))
    ids = with_ids(cfg, prompts)[..., 1] if pos in GIVEN else None
    counts = torch.arange(13) < 10 if pos in GIVEN else None  # tokens 0-9 count on, like digits
    fast = greedy_batch(model, prompts, end_id=12, max_new_tokens=10, use_cache=True, pos=ids, counts=counts)
    slow = greedy_batch(model, prompts, end_id=12, max_new_tokens=10, use_cache=False, pos=ids, counts=counts)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("pos", POS)
def test_cached_logits_equal_full_recompute(pos):
    """Feeding a sequence one token at a time through the KV cache gives the logits of one
    full forward pass, position ids included."""
    torch.manual_seed(6)
    cfg = dataclasses.replace(BASE, pos=pos, pos_slots=slots(pos))
    model = GPT(cfg).eval()
    x = with_ids(cfg, torch.randint(0, 13, (5, 14)), seed=3)
    full, _ = model(x)
    cache = KVCache(model, 5, 14, "cpu")
    step_logits = []
    for t in range(14):
        logits, _ = model(x[:, t : t + 1], cache=cache)
        cache.advance(1)
        step_logits.append(logits[:, -1])
    torch.testing.assert_close(torch.stack(step_logits, 1), full, rtol=1e-5, atol=1e-5)


def test_decoding_continues_position_ids_by_the_counting_rule():
    last = torch.tensor([4, 0, 7])
    tokens = torch.tensor([3, 3, 11])
    counts = torch.arange(13) < 10
    assert next_position(last, tokens, counts).tolist() == [5, 1, 0]
    steps = torch.where(counts, 2, 0)  # interleaved coupling counts in twos (tasks/positions.py)
    assert next_position(last, tokens, steps).tolist() == [6, 2, 0]
    rules = torch.zeros(13, 2, dtype=torch.long)  # (keep, add): digits count on, token 11 restarts at 1
    rules[:10] = torch.tensor([1, 1])
    rules[11] = torch.tensor([0, 1])
    assert next_position(last, tokens, rules).tolist() == [5, 1, 1]
    assert next_position(torch.tensor([9]), torch.tensor([12]), rules).tolist() == [0]


def test_bad_variant_names_are_rejected():
    for bad in ({"pos": "alibi"}, {"norm": "batchnorm"}, {"mlp": "tanh"}, {"max_pos": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(BASE, **bad)


def test_checkpoints_from_before_the_position_module_still_load():
    model = GPT(BASE)
    state = {("wpe.weight" if k == "pos.wpe.weight" else k): v for k, v in model.state_dict().items()}
    fresh = GPT(BASE)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.pos.wpe.weight, model.pos.wpe.weight)


def test_every_variant_name_the_config_accepts_has_one_class():
    """gpt/config.py owns the names (so configs need no torch); the layers own a class per name."""
    assert tuple(positions._CLASSES) == POSITIONS
    assert tuple(layers._MLP_CLASSES) == MLPS
    assert NORMS == ("layernorm", "rmsnorm")  # make_norm: RMSNorm, else nn.LayerNorm
