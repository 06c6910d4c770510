"""Attention maps (`workbench attention`): recorded in the model's own forward pass, equal to a
naive recomputation from its weights, and free when nobody asks for them."""

import dataclasses
import inspect
import json
import math

import pytest
import torch
from torch.nn import functional as F

import experiments.attention as attention_mod
from experiments.attention import attention_of, maps_json
from experiments.errors import install_hint
from experiments.load import load_run
from gpt import model as model_mod
from gpt.config import GIVEN, POSITIONS
from gpt.generate import KVCache, greedy_batch
from gpt.model import GPT, Block, CausalSelfAttention, GPTConfig
from helpers import TINY, cli

BASE = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16)
# abacus and coupled add an embedding as learned positions do, from ids that come with the data
VARIANTS = [(pos, qk_norm) for pos in POSITIONS if pos not in GIVEN for qk_norm in (False, True)]


def sharp_model(pos: str, qk_norm: bool, bias: bool = False) -> GPT:
    """A seeded model with large q and k weights: at GPT-2's init attention is nearly uniform,
    and a uniform map would match a wrong recomputation too."""
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(BASE, pos=pos, qk_norm=qk_norm, bias=bias))
    with torch.no_grad():
        for block in model.blocks:
            block.attn.c_attn.weight.normal_(0.0, 0.5)
            if qk_norm:  # the norm undoes any scale of q and k; its gain sets the sharpness
                block.attn.q_norm.weight.fill_(2.5)
                block.attn.k_norm.weight.fill_(2.5)
    return model.eval()


def tokens(seed: int = 1, B: int = 3, T: int = 20) -> torch.Tensor:
    return torch.randint(0, BASE.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pos,qk_norm", VARIANTS)
def test_recording_leaves_the_forward_pass_unchanged(pos, qk_norm):
    model = sharp_model(pos, qk_norm)
    x = tokens()
    y = torch.roll(x, -1, dims=1)
    recorded: list[torch.Tensor] = []
    with torch.no_grad():
        logits, loss = model(x, y)
        logits_rec, loss_rec = model(x, y, attention=recorded)
    torch.testing.assert_close(logits_rec, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(loss_rec, loss, atol=1e-5, rtol=0)
    assert [a.shape for a in recorded] == [(3, BASE.n_head, 20, 20)] * BASE.n_layer


@pytest.mark.parametrize("pos,qk_norm,bias", [(p, q, False) for p, q in VARIANTS] + [("rope", True, True)])
def test_weights_are_a_causal_softmax_equal_to_a_naive_recomputation(pos, qk_norm, bias):
    """softmax(q k^T / sqrt(d) + mask), by hand in float64 from each layer's own input and c_attn."""
    model = sharp_model(pos, qk_norm, bias)
    x = tokens()
    inputs: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].detach())) for b in model.blocks]
    recorded: list[torch.Tensor] = []
    with torch.no_grad():
        model(x, attention=recorded)
    for h in hooks:
        h.remove()
    B, T = x.shape
    H, D = BASE.n_head, BASE.head_size
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for block, resid, att in zip(model.blocks, inputs, recorded):
        att = att.double()
        torch.testing.assert_close(att.sum(-1), torch.ones(B, H, T, dtype=torch.float64))  # rows sum to 1
        assert (att[..., ~causal] == 0).all()  # nothing above the diagonal
        ln, proj = block.ln_1, block.attn.c_attn
        h = F.layer_norm(resid.double(), (BASE.n_embd,), ln.weight.double(),
                         None if ln.bias is None else ln.bias.double())
        qkv = h @ proj.weight.double().T + (0 if proj.bias is None else proj.bias.double())
        q, k, _ = qkv.split(BASE.n_embd, dim=-1)
        q, k = (t.view(B, T, H, D) for t in (q, k))
        if qk_norm:
            q, k = (t / (t.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt() * n.weight.double()
                    for t, n in ((q, block.attn.q_norm), (k, block.attn.k_norm)))
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, D)
        unrotated = naive_attention(q, k, causal, D)
        want = naive_attention(*model.pos.rotate(q, k, torch.arange(T)[None]), causal, D)
        torch.testing.assert_close(att, want, atol=1e-5, rtol=0)
        assert att.amax(-1)[..., 2:].mean() > 0.5  # peaked, so a wrong q or k would show
        if pos == "rope":  # and it would: the recomputation without the rotation is far off
            assert (att - unrotated).abs().max() > 1e-2


def naive_attention(q: torch.Tensor, k: torch.Tensor, causal: torch.Tensor, d: int) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) / math.sqrt(d) + torch.where(causal, 0.0, -math.inf).double()
    return scores.softmax(-1)


def test_recording_through_a_kv_cache_gives_the_rows_of_the_full_map():
    """Chunks fed through the cache see every earlier token: their rows are the full map's rows."""
    model = sharp_model("rope", False)
    x = tokens(B=2, T=12)
    full: list[torch.Tensor] = []
    cache = KVCache(model, 2, 12, "cpu")
    parts: list[list[torch.Tensor]] = []
    with torch.no_grad():
        model(x, attention=full)
        for a, b in ((0, 5), (5, 6), (6, 12)):
            part: list[torch.Tensor] = []
            model(x[:, a:b], cache=cache, attention=part)
            cache.advance(b - a)
            parts.append(part)
    for layer in range(BASE.n_layer):
        for (a, b), part in zip(((0, 5), (5, 6), (6, 12)), parts):
            torch.testing.assert_close(part[layer], full[layer][:, :, a:b, :b], atol=1e-6, rtol=0)


def counting_sdpa(monkeypatch) -> list[int]:
    calls = [0]
    real = F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    return calls


def test_unrecorded_forward_passes_use_only_the_fused_kernel(monkeypatch):
    """It costs nothing when unused: a training step and cached decoding call SDPA once per layer
    and never the explicit softmax."""
    calls = counting_sdpa(monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("the explicit attention ran without being asked for")

    monkeypatch.setattr(model_mod, "explicit_attention", refuse)
    model = GPT(dataclasses.replace(BASE, pos="rope", qk_norm=True)).train()
    x = tokens()
    _, loss = model(x, torch.roll(x, -1, dims=1))
    loss.backward()
    assert calls[0] == BASE.n_layer
    calls[0] = 0
    greedy_batch(model.eval(), x[:, :6], end_id=12, max_new_tokens=4)
    assert calls[0] == 4 * BASE.n_layer  # the prompt, then one token at a time
    for fn in (GPT.forward, Block.forward, CausalSelfAttention.forward):  # off unless asked for
        assert inspect.signature(fn).parameters["attention"].default is None


def test_recording_does_not_call_the_fused_kernel(monkeypatch):
    calls = counting_sdpa(monkeypatch)
    with torch.no_grad():
        GPT(BASE)(tokens(), attention=[])
    assert calls[0] == 0


# ---- experiments/attention.py and the CLI ------------------------------------------------------

@pytest.fixture(scope="module")
def add_run(tmp_path_factory):
    from experiments.cli import main

    out = tmp_path_factory.mktemp("runs") / "add"
    assert main(["train", "--task", "addition", *TINY, "--steps", "2", "--out", str(out), "-q", "--device", "cpu"]) == 0
    return out


def test_maps_cover_the_rendered_prompt_and_the_greedy_completion(add_run):
    run = load_run(add_run, device="cpu")
    maps = attention_of(run, "12+3")
    prompt = run.task.prompt(12, 3)  # the task's own rendering: '=' added, operands padded if it pads
    assert maps.prompt == prompt and maps.prompt_len == len(prompt)
    assert maps.completion == run.complete([prompt])[0]
    cfg = run.model.config
    T = len(maps.tokens)
    assert maps.weights.shape == (cfg.n_layer, cfg.n_head, T, T)
    assert abs(maps.weights.sum(-1) - 1).max() < 1e-5
    assert (maps.weights[..., ~torch.ones(T, T, dtype=torch.bool).tril().numpy()] == 0).all()


def test_cli_writes_json_and_png(add_run, tmp_path, capsys):
    code, out, err = cli(capsys, "attention", add_run, "123+45", "--out", tmp_path / "a.json", "--device", "cpu")
    assert code == 0, err
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["axes"] == ["layer", "head", "query", "key"]
    assert "".join(data["tokens"][: data["prompt_len"]]).startswith("123+")
    T = len(data["tokens"])
    rows = [row for layer in data["weights"] for head in layer for row in head]
    assert len(rows) == 1 * 2 * T and all(abs(sum(r) - 1) < 1e-3 for r in rows)  # TINY: 1 layer x 2 heads
    assert all(len(repr(w)) <= 6 for r in rows for w in r)  # 4 decimals, not float32 noise
    code, out, err = cli(capsys, "attention", add_run, "123+45", "--out", tmp_path / "a.png", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in out and "a.png" in out


def test_maps_json_rounds_to_four_decimals():
    maps = attention_mod.AttentionMaps(["a", "b"], 1, torch.tensor([[[[1.0, 0.0], [1 / 3, 2 / 3]]]]).numpy())
    assert json.loads(maps_json(maps))["weights"] == [[[[1.0, 0.0], [0.3333, 0.6667]]]]


@pytest.mark.parametrize("args,message", [
    (["12-3"], "cannot read PROMPT"),
    (["1" * 20 + "+" + "1" * 20], "block_size"),
    (["12+3", "--format", "svg"], "--format must be png or json"),
    (["12+3", "--out", "/nonexistent-folder/a.png"], "does not exist"),
])
def test_cli_user_errors(add_run, tmp_path, capsys, args, message):
    code, out, err = cli(capsys, "attention", add_run, *args, "--device", "cpu")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_png_without_matplotlib_names_the_extra_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(attention_mod, "pyplot", lambda: None)
    code, out, err = cli(capsys, "attention", tmp_path / "no-such-run", "12+3", "--out", tmp_path / "a.png")
    assert code == 2 and install_hint("plot") in err
    assert not (tmp_path / "a.png").exists()
