"""DDP through torchrun on CPU (gloo): 2 ranks x batch B == 1 process x batch B x 2 accumulation.

Rank r draws global micro-batch r * grad_accum + m, so the two runs see the same
examples; DDP averages gradients over ranks exactly as accumulation averages them
over micro-batches.  The distributed run is also stopped and resumed halfway.
"""

import os
import subprocess
import sys

import torch

from helpers import ROOT, TINY, metrics

COMMON = ["--task", "addition", *TINY, "--set", "train.warmup_steps=1", "--set", "train.lr_decay_steps=6",
          "--set", "train.eval_interval=3", "--target-acc", "0", "--seed", "7", "-q"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(args, nproc=1):
    cmd = [sys.executable, "-m", "experiments", *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "experiments", *args]
    p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def _weights(run):
    return torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)["model"]


def test_two_gloo_ranks_match_one_process_with_accumulation(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run(["train", *COMMON, "--steps", "6", "--set", "train.grad_accum=2", "--out", one])
    _run(["train", *COMMON, "--steps", "3", "--out", two], nproc=2)
    _run(["train", "--resume", "--steps", "6", "--out", two, "-q"], nproc=2)  # resume across both ranks
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    la = [r["loss"] for r in metrics(one) if "loss" in r]
    lb = [r["loss"] for r in metrics(two) if "loss" in r]
    assert len(la) == len(lb) == 6
    assert max(abs(x - y) for x, y in zip(la, lb)) < 1e-4
    assert [r["step"] for r in metrics(two)] == list(range(7))  # rank 0 alone logged, each step once
    assert not any(p.name.startswith("ckpt") and p.name != "ckpt.pt" for p in two.iterdir())


def test_nproc_wrapper_launches_torchrun(tmp_path):
    out = tmp_path / "wrapped"
    p = _run(["train", *COMMON, "--steps", "2", "--nproc", "2", "--out", out])
    assert "torch.distributed.run" in p.stderr
    assert (out / "ckpt.pt").exists()
    import json
    assert json.loads((out / "config.json").read_text())["world_size"] == 2


def test_rank_exit_keeps_output_and_exit_code():
    """A torchrun rank leaves through os._exit (gpt.distributed.exit_rank): piped, block-buffered
    output must still arrive whole, and user errors must still exit 2."""
    plain = subprocess.run([sys.executable, "-m", "experiments", "tasks"], cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=120)
    env = {**_env(), "WORLD_SIZE": "2"}
    rank = subprocess.run([sys.executable, "-m", "experiments", "tasks"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert rank.returncode == plain.returncode == 0
    assert rank.stdout == plain.stdout and "addition" in rank.stdout
    bad = subprocess.run([sys.executable, "-m", "experiments", "train", "--task", "nope"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_curriculum_level_reaches_every_rank(tmp_path):
    """Rank 0 alone evaluates, so rank 0 alone sees the level move; the loop broadcasts it, and two
    ranks then train exactly as one process with accumulation does (without the broadcast, rank 1
    would stay at level 0 and the weights would part)."""
    climb = ["--task", "addition", *TINY, "--set", "task.max_digits=3", "--set", "model.block_size=12",
             "--set", "train.batch_size=32", "--set", "train.lr=1e-2", "--set", "train.warmup_steps=5",
             "--set", "train.eval_interval=10", "--set", "train.curriculum=auto",
             "--set", "train.curriculum_threshold=0.05", "--target-acc", "0", "--seed", "7", "-q", "--steps", "30"]
    one, two = tmp_path / "one", tmp_path / "two"
    _run(["train", *climb, "--set", "train.grad_accum=2", "--out", one])
    _run(["train", *climb, "--out", two], nproc=2)
    levels = [r["level"] for r in metrics(one)]
    assert levels[-1] > 0 and levels == [r["level"] for r in metrics(two)]
    a, b = _weights(one), _weights(two)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
