import pytest
import torch

from gpt.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gpt.model import GPT, GPTConfig
from gpt.config import TrainConfig
from gpt.faults import Fault, FaultSpecError
from gpt.packing import length_chunks
from gpt.train import lr_at, make_optimizer
from helpers import TINY, cli, killed, metrics, forked_run


def test_lr_schedule_warmup_cosine_floor():
    cfg = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=100)
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 101)
    assert lr_at(99, cfg) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx(1e-4 + 0.5 * 0.9e-3)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    assert lr_at(5000, cfg) == 1e-4
    values = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_a_time_budget_decays_the_schedule_over_whichever_ends_first():
    """Issue 41: a run stopped by its budget kept a high learning rate (1.22e-3 of 3e-4 at the end)."""
    cfg = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=0, time_budget_s=10.0)
    assert lr_at(100, cfg, 5.0) == pytest.approx(1e-4 + 0.5 * 0.9e-3)  # half the budget: cos(pi/2)
    assert lr_at(600, cfg, 1.0) == lr_at(600, TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=0))
    assert lr_at(100, cfg, 10.0) == 1e-4 and lr_at(100, cfg, 99.0) == 1e-4  # spent: the floor
    assert lr_at(100, TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=0), 99.0) > 9e-4  # no budget


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_length_chunks_give_the_whole_batch_gradient(k):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=9, block_size=20, n_layer=2, n_head=2, n_embd=16))
    B, T = 11, 20
    x = torch.randint(0, 9, (B, T))
    y = torch.randint(0, 9, (B, T))
    lengths = torch.randint(0, T + 1, (B,))  # row i has targets at positions 3..lengths[i]-1
    pos = torch.arange(T)[None, :]
    y[(pos >= lengths[:, None]) | (pos < 3)] = -1
    _, loss = model(x, y)
    loss.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    chunks = length_chunks(x, y, k)
    total = 0.0
    for xc, yc, share in chunks:
        assert (yc != -1).any() and xc.shape == yc.shape and xc.size(1) <= T
        _, lc = model(xc, yc)
        (lc * share).backward()
        total += float((lc * share).detach())
    assert len(chunks) <= k and abs(sum(float(s) for *_, s in chunks) - 1) < 1e-6
    assert abs(total - float(loss.detach())) < 1e-5
    for p, g in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


def test_length_chunks_trim_and_keep_a_batch_without_targets():
    x = torch.zeros(4, 10, dtype=torch.long)
    y = torch.full((4, 10), -1)
    assert len(length_chunks(x, y, 2)) == 1  # nothing to learn: the batch stays whole
    y[0, 2], y[1, 8] = 1, 1
    chunks = length_chunks(x, y, 4)  # rows without targets are dropped; the rest trimmed
    assert sorted(c[0].size(1) for c in chunks) == [3, 9]
    assert [c[0].size(1) for c in length_chunks(x, y, 2)] == [9]  # rows 2, 3 (no targets) dropped together


def test_training_with_length_chunks_follows_the_same_losses(tmp_path, capsys):
    # calculator problems differ in length; chunked steps compute the same gradients
    base = ["train", "--task", "calculator", "--preset", "calc-steps", *TINY, "--set", "model.block_size=64", "--steps", "12",
            "--set", "train.eval_interval=6",
            "--quiet", "--device", "cpu"]
    assert cli(capsys, *base, "--set", "train.length_chunks=1", "--out", tmp_path / "a")[0] == 0  # the preset chunks
    assert cli(capsys, *base, "--set", "train.length_chunks=4", "--out", tmp_path / "b")[0] == 0
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    for ra, rb in zip(a, b):
        assert ra["step"] == rb["step"]
        for key in ("loss", "val_loss"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4), (ra["step"], key)


def test_weight_decay_only_on_matrices():
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8, bias=True))
    opt = make_optimizer(model, TrainConfig())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("bad", [dict(steps=0), dict(batch_size=-1), dict(lr=0.0), dict(min_lr=1.0),
                                 dict(compile="maybe"), dict(nan_policy="ignore"), dict(beta2=1.0)])
def test_train_config_validated(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8))
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": model.state_dict(), "step": 7, "config": {"a": 1}})
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and loaded["config"] == {"a": 1}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind

    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    for name in ("trunc.pt", "junk.pt", "foreign.pt", "missing.pt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)


def run_args(out, steps=40):
    return ["train", "--task", "shakespeare", "--preset", "nanogpt-cpu", *TINY, "--steps", steps,
            "--set", "train.eval_interval=10", "--set", "train.warmup_steps=5", "--set", "model.dropout=0.1",
            "--out", out, "--quiet", "--device", "cpu"]


def test_text_run_resumes_exactly_after_kill_9(tmp_path, capsys, shakespeare):
    """The one Shakespeare resume test (tests/test_reliability.py covers problem tasks): text
    batches are random windows of a corpus, drawn by another code path than problems."""
    code, _, err = cli(capsys, *run_args(tmp_path / "a"))
    assert code == 0, err
    full = metrics(tmp_path / "a")
    assert [r["step"] for r in full] == list(range(41))

    p = forked_run(*run_args(tmp_path / "b"), fault="kill:step=15")  # after the step-10 checkpoint
    assert killed(p), p.stderr[-2000:]
    assert metrics(tmp_path / "b")[-1]["step"] == 14 and load_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 10
    code, _, err = cli(capsys, "train", "--resume", "--out", tmp_path / "b", "--quiet", "--device", "cpu")
    assert code == 0, err
    resumed = metrics(tmp_path / "b")
    assert [r["step"] for r in resumed] == list(range(41))  # each step exactly once
    assert resumed == full  # bit-identical losses, lrs and val losses


def test_fault_spec_is_parsed_once_and_strictly():
    assert Fault.parse(None) is None and Fault.parse("") is None
    assert Fault.parse("kill:step=7") == Fault("step", 7) and Fault.parse("kill:ckpt=0").at_point("ckpt") == 0
    assert Fault.parse("kill:eval=3").at_point("step") == -1  # another point: never
    for bad in ("kill", "kill:step", "kill:step=-1", "kill:steps=3", "term:step=3", "kill:step=3x", "kill:step=1,2"):
        with pytest.raises(FaultSpecError, match="WORKBENCH_FAULT"):
            Fault.parse(bad)


def test_prefetcher_serves_exactly_the_batches_of_the_loop():
    """The CUDA background prefetch must not change the data: same batches, any access order."""
    from experiments.batches import Prefetcher, make_batch_fn
    from tasks.addition import AdditionTask

    plain = make_batch_fn(AdditionTask(), 3, 16, 16, torch.device("cpu"), grad_accum=2)
    pre = Prefetcher(make_batch_fn(AdditionTask(), 3, 16, 16, torch.device("cpu"), grad_accum=2), 2)
    try:
        keys = [("train", 5, 0), ("train", 5, 1), ("train", 6, 0), ("val", 1 << 40, 0), ("train", 6, 1),
                ("train", 9, 0), ("train", 9, 1)]  # in order, after an eval, and after a resume jump
        for k in keys:
            for a, b in zip(pre(*k), plain(*k)):
                assert torch.equal(a, b), k
    finally:
        pre.close()
