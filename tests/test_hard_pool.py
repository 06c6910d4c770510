"""train.hard_pool: online hard-example mining, each micro-batch the rows of highest loss in a pool.

hardest_rows is checked against a row-by-row loss computed on its own; a trainer step against a
plain step on the rows the reference picks; a run with a pool against an exact resume after kill -9."""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from gpt.config import GPTConfig, TrainConfig
from gpt.model import GPT
from gpt.train import Trainer, hardest_rows
from helpers import cli, forked_run, killed, metrics
from test_reliability import args as run_args
from test_reliability import resume as resume_args

V = 11


def model_and_pool(seed: int, n: int, t: int) -> tuple[GPT, torch.Tensor, torch.Tensor]:
    """A random tiny model and a pool of n right-padded rows, some without any target."""
    g = torch.Generator().manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, V, (n, t), generator=g)
    y = torch.randint(0, V, (n, t), generator=g)
    y[torch.rand(n, t, generator=g) < 0.4] = -1
    y[torch.randint(0, n, (1,), generator=g)] = -1  # a row with nothing to learn scores 0
    return model, x, y


def row_losses(model: GPT, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Each row's mean loss over its targets, one row at a time, in eval mode (0 for a row without)."""
    model.eval()
    losses = []
    with torch.no_grad():
        for i in range(len(x)):
            valid = y[i] != -1
            logits, _ = model(x[i : i + 1])
            losses.append(F.cross_entropy(logits[0][valid], y[i][valid]).item() if valid.any() else 0.0)
    return losses


def reference_rows(model: GPT, x: torch.Tensor, y: torch.Tensor, keep: int) -> list[int]:
    """The `keep` rows of highest loss, in pool order."""
    losses = row_losses(model, x, y)
    return sorted(sorted(range(len(x)), key=lambda i: -losses[i])[:keep])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 24), t=st.integers(1, 12), data=st.data())
def test_hardest_rows_keeps_the_rows_of_highest_mean_loss(seed, n, t, data):
    keep = data.draw(st.integers(1, n))
    model, x, y = model_and_pool(seed, n, t)
    want = reference_rows(model, x, y, keep)  # leaves the model in eval mode
    model.train()
    got = hardest_rows(model, x, y, keep).tolist()
    assert model.training  # the scoring pass leaves the model in the mode it found it in
    assert len(got) == keep and got == sorted(got)
    if got != want:  # rows tied in loss (duplicates, rows without targets) may swap: their losses agree
        loss = row_losses(model, x, y)
        assert sorted(loss[i] for i in got) == pytest.approx(sorted(loss[i] for i in want), abs=1e-5)


def test_a_step_trains_on_the_kept_rows_only(tmp_path):
    """One trainer step with a pool of 4 x 6 rows moves the weights exactly as a plain step on the
    6 rows the reference picks: the step neither trains on the pool nor on other rows."""
    model, x, y = model_and_pool(3, 24, 10)
    twin = GPT(model.config)
    twin.load_state_dict(model.state_dict())
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    picked = reference_rows(model, x, y, 6)
    model.train()
    cfg = TrainConfig(steps=1, batch_size=6, hard_pool=4, warmup_steps=0, eval_interval=1, eval_iters=1)
    pooled = Trainer(model, cfg, lambda split, step, micro: (x, y), tmp_path / "a", torch.device("cpu"))
    plain = Trainer(twin, TrainConfig(steps=1, batch_size=6, warmup_steps=0, eval_interval=1, eval_iters=1),
                    lambda split, step, micro: (x[picked], y[picked]), tmp_path / "b", torch.device("cpu"))
    a, b = pooled.train_step(0.0), plain.train_step(0.0)
    assert a.loss == b.loss and a.tokens == b.tokens == 6 * 10
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, start[name]) for name, p in model.named_parameters())  # the step did move them


def test_a_pool_of_one_is_the_plain_step():
    assert TrainConfig(batch_size=12).drawn_rows == 12 and TrainConfig(batch_size=12, hard_pool=3).drawn_rows == 36


@pytest.mark.parametrize("bad", ["0", "-2", "1.5"])
def test_a_bad_pool_is_one_line_and_exit_2(tmp_path, capsys, bad):
    code, _, err = cli(capsys, *run_args(tmp_path / "run", "--set", f"train.hard_pool={bad}"))
    assert code == 2 and err.count("\n") == 1 and "train.hard_pool" in err, err
    assert not (tmp_path / "run").exists()


def test_a_pooled_run_resumes_exactly_after_kill_9(tmp_path, capsys):
    """The kept rows depend on the weights, which the checkpoint holds: a run killed mid-way and
    resumed logs every step's loss exactly as the run that was never stopped (dropout, Abacus
    offsets and length chunks on, as in test_reliability)."""
    pool = ("--set", "train.hard_pool=3")
    ref, run = tmp_path / "ref", tmp_path / "run"
    code, _, err = cli(capsys, *run_args(ref, *pool))
    assert code == 0, err
    p = forked_run(*run_args(run, *pool), fault="kill:step=15")
    assert killed(p), p.stderr[-2000:]  # the fault happened: the run died mid-way
    assert [r["step"] for r in metrics(run)][-1] == 14
    code, _, err = cli(capsys, *resume_args(run))
    assert code == 0, err
    assert metrics(run) == metrics(ref)
    # and the pool is not a no-op: the same run without it logs other losses
    plain = tmp_path / "plain"
    assert cli(capsys, *run_args(plain))[0] == 0
    losses = [r["loss"] for r in metrics(plain) if "loss" in r]
    assert losses != [r["loss"] for r in metrics(ref) if "loss" in r]
    assert re.search(r"hard_pool", (ref / "config.json").read_text())
