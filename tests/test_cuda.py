"""CUDA paths: the same model, decoding, training, checkpoints and resume on a GPU.

Skipped where there is no CUDA device (CI has none). Run on a GPU machine with
`python -m pytest tests/test_cuda.py -v`; docs/benchmarks.md records when they last ran.
"""

import dataclasses
import os
import signal
import time

import pytest
import torch

from gpt.generate import greedy_batch
from gpt.model import GPT, GPTConfig
from tests.helpers import TINY, cli, metrics, workbench_proc
from tests.test_model import naive_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CFG = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=4, n_embd=32)
VARIANTS = [dict(), dict(pos="rope"), dict(pos="none"), dict(pos="coupled", max_pos=30),
            dict(norm="rmsnorm", mlp="swiglu", qk_norm=True)]


def with_ids(variant: dict, idx: torch.Tensor) -> torch.Tensor:
    """Tokens, with random position ids beside them for a variant whose ids come with the data."""
    if variant.get("pos") != "coupled":
        return idx
    ids = torch.randint(0, 31, idx.shape, generator=torch.Generator().manual_seed(5)).to(idx.device)
    return torch.stack([idx, ids], dim=-1)


@pytest.fixture(autouse=True)
def exact_fp32():
    # full fp32 matmuls, so the GPU is compared with the CPU at fp32 tolerances
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "baseline")
def test_logits_on_gpu_equal_cpu(variant):
    torch.manual_seed(0)
    cpu = GPT(dataclasses.replace(CFG, **variant)).eval()
    gpu = GPT(dataclasses.replace(CFG, **variant)).cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    idx = with_ids(variant, torch.randint(0, 13, (4, 20)))
    targets = torch.randint(-1, 13, (4, 20))
    with torch.no_grad():
        lc, loss_c = cpu(idx, targets)
        lg, loss_g = gpu(idx.cuda(), targets.cuda())
    torch.testing.assert_close(lg.cpu(), lc, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(loss_g.cpu(), loss_c, atol=1e-5, rtol=1e-5)


def test_batched_attention_equals_per_head_loop_on_gpu():
    torch.manual_seed(0)
    model = GPT(CFG).cuda().eval()
    attn = model.blocks[0].attn
    x = torch.randn(3, 10, CFG.n_embd, device="cuda")
    with torch.no_grad():
        got = attn(x, model.pos, torch.arange(10, device="cuda")[None])
        ref = naive_attention(attn.cpu().double(), x.cpu().double())  # float64 on the CPU
    torch.testing.assert_close(got.cpu().double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "baseline")
def test_kv_cache_decode_equals_full_recompute_on_gpu(variant):
    torch.manual_seed(1)
    m = GPT(dataclasses.replace(CFG, **variant)).cuda().eval()
    prompts = torch.randint(0, 12, (9, 5), device="cuda")
    pos = with_ids(variant, prompts)[..., 1] if variant.get("pos") == "coupled" else None
    counts = (torch.arange(13) < 10).cuda() if pos is not None else None
    a = greedy_batch(m, prompts, end_id=12, max_new_tokens=15, use_cache=True, pos=pos, counts=counts)
    b = greedy_batch(m, prompts, end_id=12, max_new_tokens=15, use_cache=False, pos=pos, counts=counts)
    assert torch.equal(a, b)


def _train(out, steps, *extra):
    return ["train", "--task", "addition", *TINY, "--steps", steps, "--set", "train.eval_interval=20",
            "--out", out, "--quiet", "--device", "cuda", *extra]


def test_train_on_gpu_compiled_bf16_then_eval_on_cpu(tmp_path, capsys):
    # compile=auto is on for CUDA, and the step runs under bf16 autocast
    code, _, err = cli(capsys, *_train(tmp_path / "r", 200, "--set", "model.n_embd=64"))
    assert code == 0, err
    rec = metrics(tmp_path / "r")
    losses = [r["loss"] for r in rec if "loss" in r]
    assert losses[-1] < 0.6 * losses[0]
    code, out, err = cli(capsys, "eval", tmp_path / "r", "--n", "200", "--device", "cpu")
    assert code == 0, err
    assert "accuracy" in out


def test_resume_after_kill_on_gpu_continues_the_same_run(tmp_path, capsys):
    # bf16 autocast and atomic adds in the embedding backward are not bitwise deterministic on
    # CUDA, so the resumed run is compared with a tolerance; every step must run exactly once
    args = ("--set", "train.compile=off", "--set", "train.log_interval=1")
    assert cli(capsys, *_train(tmp_path / "a", 600, *args))[0] == 0
    p = workbench_proc(*_train(tmp_path / "b", 600, *args))
    log = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and sum(1 for _ in log.open()) > 250):
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    code, _, err = cli(capsys, "train", "--resume", "--out", tmp_path / "b", "--quiet", "--device", "cuda")
    assert code == 0, err
    full, resumed = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    a = torch.tensor([r["loss"] for r in full if "loss" in r])
    b = torch.tensor([r["loss"] for r in resumed if "loss" in r])
    print(f"resume on GPU: max |loss difference| over {len(a)} steps = {(a - b).abs().max():.2e}")
    torch.testing.assert_close(b, a, atol=2e-2, rtol=2e-2)


def _ragged_batch_gradient() -> tuple[GPT, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """A RoPE model, a right-padded batch of rows 4..T long, and the padded batch's gradient."""
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(CFG, pos="rope")).cuda()
    B, T = 16, CFG.block_size
    x = torch.randint(0, CFG.vocab_size, (B, T), device="cuda")
    y = torch.randint(0, CFG.vocab_size, (B, T), device="cuda")
    lengths = torch.randint(4, T + 1, (B,), device="cuda")
    pos = torch.arange(T, device="cuda")[None, :]
    y[(pos >= lengths[:, None]) | (pos < 3)] = -1
    _, loss = model(x, y)
    loss.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return model, x, y, want


@pytest.mark.parametrize("k", [2, 4])
def test_length_chunks_give_the_whole_batch_gradient_on_gpu(k):
    from gpt.packing import length_chunks
    model, x, y, want = _ragged_batch_gradient()
    for xc, yc, share in length_chunks(x, y, k):
        _, lc = model(xc, yc)
        (lc * share).backward()
    for p, g in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("width", [0, 16])
def test_packed_rows_give_the_whole_batch_gradient_on_gpu(width):
    from gpt.packing import pack_rows
    model, x, y, want = _ragged_batch_gradient()
    for xp, yp, share, seg in pack_rows(x, y, width):
        _, lp = model(xp, yp, segments=seg)
        (lp * share).backward()
    for p, g in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


def test_training_with_length_chunks_on_gpu_follows_the_same_losses(tmp_path, capsys):
    base = ["train", "--task", "calculator", "--preset", "calc-steps", *TINY, "--set", "model.block_size=64", "--steps", "40",
            "--set", "train.eval_interval=20", "--set", "train.compile=off", "--quiet", "--device", "cuda"]
    assert cli(capsys, *base, "--set", "train.length_chunks=1", "--out", tmp_path / "a")[0] == 0  # the preset chunks
    assert cli(capsys, *base, "--set", "train.length_chunks=4", "--out", tmp_path / "b")[0] == 0
    a = torch.tensor([r["loss"] for r in metrics(tmp_path / "a") if "loss" in r])
    b = torch.tensor([r["loss"] for r in metrics(tmp_path / "b") if "loss" in r])
    torch.testing.assert_close(b, a, atol=2e-2, rtol=2e-2)  # bf16 autocast: close, not bitwise


def test_batch_workers_on_gpu_feed_the_same_batches(tmp_path, capsys):
    """DataLoader workers with pinned memory on CUDA: the losses of the run without them (the same
    batches; close rather than bitwise, as CUDA's embedding backward adds atomically)."""
    base = ["train", "--task", "calculator", "--preset", "calc-steps", *TINY, "--set", "model.block_size=64", "--steps", "30",
            "--set", "train.eval_interval=10", "--set", "train.compile=off", "--quiet", "--device", "cuda"]
    assert cli(capsys, *base, "--batch-workers", "0", "--out", tmp_path / "a")[0] == 0
    assert cli(capsys, *base, "--batch-workers", "3", "--out", tmp_path / "b")[0] == 0
    a = torch.tensor([r["loss"] for r in metrics(tmp_path / "a") if "loss" in r])
    b = torch.tensor([r["loss"] for r in metrics(tmp_path / "b") if "loss" in r])
    assert len(a) == 30
    torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL DDP needs 2 GPUs (one rank per GPU)")
def test_two_nccl_ranks_match_one_process_with_accumulation(tmp_path):
    """tests/test_ddp.py's gloo equivalence, on NCCL: 2 GPUs x batch B == 1 GPU x B x 2 accumulation."""
    from tests.test_ddp import COMMON, _run, _weights
    one, two = tmp_path / "one", tmp_path / "two"
    cuda = ["--device", "cuda", "--set", "train.compile=off"]
    _run(["train", *COMMON, *cuda, "--steps", "6", "--set", "train.grad_accum=2", "--out", one])
    _run(["train", *COMMON, *cuda, "--steps", "6", "--out", two], nproc=2)
    a, b = _weights(one), _weights(two)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=2e-2, atol=2e-3, msg=k)  # bf16 autocast on both
