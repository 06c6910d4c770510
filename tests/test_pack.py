"""Packed rows (train.pack): several problems end to end in one row, one attention segment each.

The references are independent of packing: each problem alone in a row of its own for the
logits, and the unpacked, padded batch for the loss and its gradient."""

import dataclasses
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.config import GIVEN, POSITIONS, SLOTTED
from gpt.generate import KVCache
from gpt.model import GPT, GPTConfig, segment_positions
from gpt.config import TrainConfig
from gpt.packing import pack_rows, row_lengths
from helpers import TINY, cli, metrics

BASE = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16, max_pos=30,
                 norm="rmsnorm", mlp="swiglu", qk_norm=True)


def batch(lengths: list[int], T: int, pos: str = "learned", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows: row i has tokens everywhere and targets at 1 .. lengths[i]-1 (0: none),
    with random position ids beside the tokens for the encodings that read them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 13, (len(lengths), T), generator=g)
    y = torch.randint(0, 13, (len(lengths), T), generator=g)
    cols = torch.arange(T)[None]
    y[(cols >= torch.tensor(lengths)[:, None]) | (cols < 1)] = -1
    if pos in GIVEN:
        slots = 3 if pos in SLOTTED else 0
        x = torch.stack([x, torch.randint(-slots, 31, x.shape, generator=g)], dim=-1)
    return x, y


def model_for(pos: str) -> GPT:
    torch.manual_seed(0)
    return GPT(dataclasses.replace(BASE, pos=pos, pos_slots=3 if pos in SLOTTED else 0)).train()


@pytest.mark.parametrize("pos", POSITIONS)
def test_each_packed_problem_gets_the_logits_it_gets_alone(pos):
    model = model_for(pos)
    lengths = [5, 17, 3, 12, 8, 2, 11]
    x, y = batch(lengths, 20, pos)
    (xp, yp, _, seg), = pack_rows(x, y)
    assert xp.size(0) < len(lengths)  # several problems did share a row
    packed, _ = model(xp, yp, segments=seg)
    found = 0
    for i in range(xp.size(0)):
        for s in seg[i].unique().tolist():
            cols = (seg[i] == s).nonzero().squeeze(1)
            tokens = xp[i, cols]
            r = next((r for r, n in enumerate(lengths) if n == len(cols) and torch.equal(x[r, :n], tokens)), None)
            if r is None:  # the row's padding
                assert (yp[i, cols] == -1).all()
                continue
            alone, _ = model(x[r : r + 1, : lengths[r]], y[r : r + 1, : lengths[r]])
            torch.testing.assert_close(packed[i, cols], alone[0], atol=1e-5, rtol=1e-5)
            found += 1
    assert found == len(lengths)


@pytest.mark.parametrize("pos", ["rope", "learned", "coupled_rel"])
@pytest.mark.parametrize("width", [0, 12])
def test_packed_parts_give_the_whole_batch_gradient(pos, width):
    model = model_for(pos)
    x, y = batch([5, 17, 0, 3, 12, 20, 8, 2, 11], 20, pos, seed=1)
    _, loss = model(x, y)
    loss.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    parts = pack_rows(x, y, width)
    assert len(parts) == (2 if width else 1)  # width 12: rows of 17 and 20 make a part of their own
    total = 0.0
    for xp, yp, share, seg in parts:
        _, lp = model(xp, yp, segments=seg)
        (lp * share).backward()
        total += float(lp * share)
    assert total == pytest.approx(float(loss), rel=1e-5)
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, w, atol=1e-6, rtol=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=25), st.integers(0, 30), st.integers(0, 2**31))
def test_pack_rows_keeps_every_problem_once_within_the_width(lengths, width, seed):
    T = max(lengths + [1])
    x, y = batch(lengths, T, seed=seed)
    lengths = row_lengths(y).tolist()  # a row whose only target column is 0 has none: 1 counts as 0
    parts = pack_rows(x, y, width)
    if not any(lengths):
        assert len(parts) == 1 and parts[0][0] is x  # nothing to learn: the batch as it was
        return
    cap = width or T
    seen = []
    for xp, yp, share, seg in parts:
        assert xp.shape == yp.shape
        if seg is None:  # the rows too long to pack, one a row, trimmed to the longest
            assert all(n > cap for n in row_lengths(yp).tolist()) and yp.size(1) == max(row_lengths(yp).tolist())
            seen += [(tuple(r[:n].tolist()), tuple(t[:n].tolist())) for r, t, n in zip(xp, yp, row_lengths(yp).tolist())]
            continue
        assert xp.size(1) <= cap
        assert torch.equal(segment_positions(seg)[:, 0], torch.zeros(len(seg), dtype=torch.long))
        for i in range(xp.size(0)):
            ids = seg[i].tolist()
            assert ids == sorted(ids)  # segments are contiguous, numbered in order
            for s in set(ids):
                cols = [c for c, v in enumerate(ids) if v == s]
                if (yp[i, cols] != -1).any():
                    seen.append((tuple(xp[i, cols].tolist()), tuple(yp[i, cols].tolist())))
    assert sum(float(p[2]) for p in parts) == pytest.approx(1.0)
    want = [(tuple(x[r, :n].tolist()), tuple(y[r, :n].tolist())) for r, n in enumerate(lengths) if n]
    assert sorted(seen) == sorted(want)


def test_segment_positions_count_from_each_segment_start():
    seg = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 1, 1, 1, 1, 1, 1, 2, 2]])
    assert segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 0, 1, 2, 3, 4, 5, 0, 1]]


def test_segments_are_for_training_not_decoding():
    model = model_for("rope").eval()
    cache = KVCache(model, 1, 8, "cpu")
    with pytest.raises(ValueError, match="packed rows"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache, segments=torch.zeros(1, 3, dtype=torch.long))


def test_pack_and_length_chunks_do_not_combine(tmp_path, capsys):
    with pytest.raises(ValueError, match="train.pack and train.length_chunks"):
        TrainConfig(pack=True, length_chunks=4)
    with pytest.raises(ValueError, match="pack_width"):
        TrainConfig(pack=True, pack_width=-1)
    code, _, err = cli(capsys, "train", "--task", "calculator", *TINY, "--steps", "2", "--quiet", "--device", "cpu",
                       "--set", "train.pack=true", "--set", "train.length_chunks=4", "--out", tmp_path / "r")
    assert code == 2 and "train.pack and train.length_chunks" in err and "Traceback" not in err


def test_training_packed_follows_the_same_losses(tmp_path, capsys):
    # calculator problems differ in length; packed steps compute the gradient of the padded batch
    base = ["train", "--task", "calculator", "--preset", "calc-steps", *TINY, "--set", "model.block_size=64",
            "--steps", "12", "--set", "train.eval_interval=6", "--quiet", "--device", "cpu", "--set", "train.length_chunks=1"]
    assert cli(capsys, *base, "--out", tmp_path / "a")[0] == 0
    assert cli(capsys, *base, "--set", "train.pack=true", "--out", tmp_path / "b")[0] == 0
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert len(a) == len(b) > 12
    for ra, rb in zip(a, b):
        assert ra["step"] == rb["step"]
        for key in ("loss", "val_loss"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4), (ra["step"], key)


def test_packed_training_compiled_on_the_cpu_follows_the_same_losses(tmp_path, capsys):
    # calc3 ships with train.compile=on: packed rows change shape every step (dynamic shapes)
    base = ["train", "--task", "calculator", "--preset", "calc3", *TINY, "--set", "model.block_size=416", "--steps", "6",
            "--set", "train.eval_interval=3", "--quiet", "--device", "cpu"]
    assert cli(capsys, *base, "--out", tmp_path / "a")[0] == 0
    assert cli(capsys, *base, "--set", "train.compile=off", "--out", tmp_path / "b")[0] == 0
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train"]["compile"] == "on"
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) > 6
    for ra, rb in zip(a, b):
        for key in ("loss", "val_loss"):
            if key in ra:
                assert ra[key] == pytest.approx(rb[key], rel=1e-3), (ra["step"], key)


def test_a_torch_compile_failure_is_one_line_that_names_compile_off(tmp_path, capsys, monkeypatch):
    class InvalidCxxCompiler(RuntimeError):  # what inductor raises on a CPU box without a C++ compiler
        pass

    InvalidCxxCompiler.__module__ = "torch._inductor.exc"
    raised = []

    def broken_compile(model, *args, **kwargs):
        def forward(*a, **kw):
            raised.append(1)
            raise InvalidCxxCompiler("No working C++ compiler found in torch._inductor.config.cpp.cxx")
        return forward

    monkeypatch.setattr(torch, "compile", broken_compile)
    code, _, err = cli(capsys, "train", "--task", "addition", *TINY, "--steps", "2", "--set", "train.compile=on",
                       "--quiet", "--device", "cpu", "--out", tmp_path / "r")
    assert raised  # the fault did happen, in the compiled forward
    assert code == 2 and "Traceback" not in err
    assert "torch.compile failed (No working C++ compiler" in err and "--set train.compile=off" in err
