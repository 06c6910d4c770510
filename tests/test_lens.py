"""Run.to_transformer_lens(): a TransformerLens HookedTransformer with the run's weights gives the
run's own logits and attention on its own batches, for every model option TransformerLens can
express; the rest is refused by name.  And the worked example (benchmarks/carry_patching.py):
on a trained addition run, patching finds the head that carries, the head `workbench attention`
shows reading the place below."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import need_module
from experiments.attention import attention_of
from experiments.build import build_task, fit_model
from experiments.errors import UserError, install_hint
from experiments.load import LENS_NEEDS, Run, load_run
from experiments.runspec import resolve_spec
from gpt.config import GIVEN
from gpt.model import GPT
from helpers import ROOT



@pytest.fixture(autouse=True, scope="module")
def tl():
    """The lens extra: skipped without it on a developer's machine, failed in CI (conftest.need_module)."""
    return need_module("transformer_lens", "lens")


TINY = ["model.n_layer=2", "model.n_head=2", "model.n_embd=16", "task.max_digits=3"]
# every option TransformerLens expresses, alone, and the parameter savers together with the rest
OPTIONS = {
    "learned": [], "rope": ["model.pos=rope"], "none": ["model.pos=none"], "rmsnorm": ["model.norm=rmsnorm"],
    "swiglu": ["model.mlp=swiglu"], "relu2": ["model.mlp=relu2"], "untied": ["model.tie_weights=false"],
    "bias": ["model.bias=true"], "qk_norm": ["model.qk_norm=true"], "rank": ["model.rank=4"],
    "tie_kv": ["model.tie_kv=true"], "tie_qo": ["model.tie_qo=true"], "share_norms": ["model.share_norms=true"],
    "mlp_hidden": ["model.mlp_hidden=6"], "swiglu of 5": ["model.mlp=swiglu", "model.mlp_hidden=5"],
    "savers, rope, rms, swiglu, qk_norm": ["model.rank=3", "model.tie_kv=true", "model.tie_qo=true",
                                           "model.share_norms=true", "model.pos=rope", "model.norm=rmsnorm",
                                           "model.mlp=swiglu", "model.qk_norm=true", "model.tie_weights=false"],
    "savers, layernorm with bias, qk_norm": ["model.rank=3", "model.tie_kv=true", "model.tie_qo=true",
                                             "model.share_norms=true", "model.bias=true", "model.qk_norm=true"],
}


def hand_run(sets: list[str], noise: float = 0.3) -> Run:
    """An addition run built without training, every weight moved off its init (at init the norms
    are ones, the biases zeros and attention nearly uniform: a wrong conversion of any of them would
    still match)."""
    spec = resolve_spec("addition", sets=[*TINY, *sets])
    task = build_task(spec)
    torch.manual_seed(0)
    model = GPT(fit_model(task, spec.model)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    return Run(Path("hand"), {}, task, model, 0, spec)


def batch(run: Run) -> torch.Tensor:
    """A training batch of the run's task, as the loop gets it: (16, T) token ids."""
    x, _ = run.task.batch(1337, "train", 0, 0, 16, run.model.config.block_size)
    return torch.as_tensor(x, dtype=torch.long)


@pytest.mark.parametrize("name", OPTIONS)
def test_logits_and_attention_equal_the_run_s_own(name, tl):
    run = hand_run(OPTIONS[name])
    x = batch(run)
    hooked = run.to_transformer_lens()
    assert isinstance(hooked, tl.HookedTransformer)
    recorded: list[torch.Tensor] = []
    with torch.no_grad():
        want, _ = run.model(x, attention=recorded)
        got, cache = hooked.run_with_cache(x)
    assert want.std() > 0.5  # logits that differ from token to token: the comparison means something
    assert (got - want).abs().max() <= 1e-4
    for layer, att in enumerate(recorded):  # what each head reads, as `workbench attention` records it
        assert (cache["pattern", layer] - att).abs().max() <= 1e-5
    # in float64 the two differ by rounding alone (RoPE's float32 tables aside): a wrong eps would show
    run.model.double()
    with torch.no_grad():
        assert (run.to_transformer_lens()(x) - run.model(x)[0]).abs().max() <= 1e-6


def test_the_hooked_model_is_a_copy():
    run = hand_run([])
    hooked = run.to_transformer_lens()
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    with torch.no_grad():
        hooked.blocks[0].attn.W_Q.zero_()
        hooked.embed.W_E.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())


@pytest.mark.parametrize("sets,option", [([f"model.pos={pos}"], f"model.pos={pos} reads position ids") for pos in GIVEN]
                         + [(["model.mlp=swiglu", "model.bias=true"], "model.mlp=swiglu with model.bias=true")])
def test_what_transformer_lens_cannot_express_is_refused_by_name(sets, option, monkeypatch):
    run = hand_run(sets)
    monkeypatch.setattr("experiments.load.transformer_lens", lambda: pytest.fail("imported before refusing"))
    with pytest.raises(UserError) as e:
        run.to_transformer_lens()
    message = str(e.value)
    assert message.startswith(f"run hand cannot be a HookedTransformer: {option}") and "\n" not in message


@pytest.mark.parametrize("missing", ["transformer_lens", "transformer_lens.HookedTransformer"])
def test_without_the_extra_one_line_names_it(missing, monkeypatch):
    """Not installed, or a 4.x (which has no HookedTransformer module): the install line of the extra."""
    monkeypatch.setitem(sys.modules, missing, None)  # import then raises ImportError
    with pytest.raises(UserError) as e:
        hand_run([]).to_transformer_lens()
    assert str(e.value) == f"Run.to_transformer_lens() needs {LENS_NEEDS}: {install_hint('lens')}"
    assert install_hint("lens").endswith("[lens]'")


# ---- the worked example: which head carries ------------------------------------------------------

def carry_patching():
    """benchmarks/carry_patching.py as a module (registered first: its dataclasses look themselves up)."""
    if "carry_patching" not in sys.modules:
        spec = importlib.util.spec_from_file_location("carry_patching", ROOT / "benchmarks" / "carry_patching.py")
        sys.modules["carry_patching"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["carry_patching"]


def test_patching_finds_the_head_that_attention_shows_reading_the_place_below(addition_run):
    example = carry_patching()
    run = load_run(addition_run, device="cpu")
    heads = example.carry_heads(run, n=60)
    top = heads.patched_head
    assert top == heads.attending_head  # the two methods agree
    others = np.delete(np.abs(heads.patching).ravel(), np.ravel_multi_index(top, heads.patching.shape))
    assert heads.patching[top] > 0.5 and heads.patching[top] > 4 * others.max()  # and by a wide margin
    # what `workbench attention RUN 358+467` draws: in 358+467=5280, the rows of 5, 2 and 8 (which
    # predict the tens, hundreds and thousands) of that head put the most weight on the place below
    maps = attention_of(run, "358+467")
    P = maps.prompt_len
    below = np.array([maps.weights[:, :, P + j, [2 - j, 6 - j]].sum(-1) for j in range(3)]).mean(0)  # (L, H)
    assert np.unravel_index(below.argmax(), below.shape) == top and below[top] > 0.5


def test_the_example_refuses_a_layout_it_cannot_read():
    example = carry_patching()
    run = hand_run(["task.zero_pad=false"])
    with pytest.raises(UserError, match="task.zero_pad=False"):
        example.carry_heads(run, n=4)
