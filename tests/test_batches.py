"""Batch workers: a DataLoader's processes must serve exactly the batches the loop builds itself."""

import pytest
import torch

from experiments.batches import Prefetcher, WorkerBatches, auto_workers, batch_source, make_batch_fn
from gpt.train import EVAL_STEP_BASE
from helpers import TINY, cli, metrics
from tasks.addition import AdditionConfig, AdditionTask
from tasks.calculator import CalculatorTask
from tasks.curriculum import Curriculum

CPU = torch.device("cpu")


@pytest.mark.parametrize("task", [AdditionTask(), CalculatorTask()], ids=["addition", "calculator"])
@pytest.mark.parametrize("rank", [0, 1])
def test_worker_batches_equal_the_loops_own(task, rank):
    """Two worker processes, grad_accum 2, a DDP rank: the same tensors for every key, whether the
    loop starts at step 0 or resumes at 7, reads the loss-estimate batches between steps, or jumps."""
    plain = make_batch_fn(task, 11, 8, 64, CPU, rank=rank, grad_accum=2)
    workers = WorkerBatches(task, 11, 8, 64, CPU, workers=2, rank=rank, grad_accum=2)
    keys = ([("train", s, m) for s in range(3) for m in range(2)]
            + [("train", EVAL_STEP_BASE, 0), ("val", EVAL_STEP_BASE + 1, 0)]  # an eval between steps
            + [("train", 3, 0), ("train", 3, 1), ("train", 7, 0), ("train", 7, 1), ("train", 8, 0)])  # a jump
    try:
        for k in keys:
            a, b = workers(*k), plain(*k)
            assert all(torch.equal(u, v) for u, v in zip(a, b)), k
        assert workers.next_index == 8 * 2 + 1  # the loader followed the jump, not rebuilt every batch
    finally:
        workers.close()
    resumed = WorkerBatches(task, 11, 8, 64, CPU, workers=1, rank=rank, grad_accum=2)
    try:  # a resumed run's loader starts at its step
        for k in [("train", 4, 0), ("train", 4, 1), ("train", 5, 0)]:
            assert all(torch.equal(u, v) for u, v in zip(resumed(*k), plain(*k))), k
    finally:
        resumed.close()


def test_auto_is_off_on_the_cpu_and_on_with_a_gpu_and_spare_cores():
    assert auto_workers(CPU, cpus=64) == 0
    assert auto_workers(torch.device("cuda"), cpus=16) == 4
    assert auto_workers(torch.device("cuda"), cpus=6) == 3
    assert auto_workers(torch.device("cuda"), cpus=2) == 0  # too few cores: the prefetch thread instead
    threads = torch.get_num_threads()
    try:  # a grid's run given one thread (OMP_NUM_THREADS=1) starts no workers of its own
        torch.set_num_threads(1)
        assert auto_workers(torch.device("cuda")) == 0
    finally:
        torch.set_num_threads(threads)
    fn, close = batch_source(AdditionTask(), 1, 4, 16, CPU, 0, 1, None)
    assert not isinstance(fn, WorkerBatches)
    close()


def test_training_with_batch_workers_follows_the_same_losses(tmp_path, capsys):
    """End to end on the CPU: a run with 2 batch workers logs exactly what the run without them
    logs (timing fields aside)."""
    common = ["--task", "addition", "--seed", "5", *TINY, "--set", "train.eval_interval=5", "--quiet",
              "--steps", "16", "--set", "train.grad_accum=2"]
    assert cli(capsys, "train", *common, "--out", tmp_path / "plain")[0] == 0
    code, _, err = cli(capsys, "train", *common, "--out", tmp_path / "w", "--batch-workers", "2")
    assert code == 0, err
    assert metrics(tmp_path / "w") == metrics(tmp_path / "plain")


def test_a_bad_worker_count_is_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "--task", "addition", "--batch-workers", "-1", "--out", tmp_path / "r")
    assert code == 2 and err.strip() == "error: --batch-workers must be between 0 and 64, got -1"


def test_workers_and_the_prefetcher_follow_a_curriculum_level_change():
    """The level is part of a batch's key: when an eval moves the curriculum up, batches built
    ahead at the old level are thrown away, and every source serves the loop's own batches."""
    task = AdditionTask(AdditionConfig(max_digits=4))
    cur = Curriculum(task, 0.2)
    level = {"now": 0}

    def now():
        return level["now"]

    plain = make_batch_fn(task, 3, 8, 16, CPU, curriculum=cur, level=now)
    workers = WorkerBatches(task, 3, 8, 16, CPU, workers=1, curriculum=cur, level=now)
    pre = Prefetcher(make_batch_fn(task, 3, 8, 16, CPU, curriculum=cur, level=now), 1, now)
    try:
        for step in range(6):
            if step == 3:
                level["now"] = 2  # an eval after step 2 moved it up
            want = plain("train", step, 0)
            for src in (workers, pre):
                assert all(torch.equal(u, v) for u, v in zip(src("train", step, 0), want)), (step, src)
        fixed = make_batch_fn(task, 3, 8, 16, CPU, curriculum=cur, level=lambda: 0)
        assert not torch.equal(plain("train", 5, 0)[0], fixed("train", 5, 0)[0])  # the level did matter
    finally:
        workers.close()
        pre.close()
