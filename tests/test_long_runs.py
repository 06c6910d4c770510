"""Long runs: memory does not grow with the steps of a run, and a 1M-problem eval streams in
constant memory (slow suite).

    python -m pytest tests/test_long_runs.py -s               # the run's figures, every eval
    python -m pytest -m slow tests/test_long_runs.py -s       # the 1M-problem eval
"""

import ctypes
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

import experiments.training
from gpt.progress import TrainProgress
from helpers import TINY, cli, workbench_proc


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample_rss(p, every: float = 1.0, step_of=None) -> list[tuple[int, float]]:
    samples = []
    while p.poll() is None:
        r = rss_mb(p.pid)
        if r is not None:
            samples.append((step_of() if step_of else len(samples), r))
        time.sleep(every)
    return samples


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2, libc.malloc_trim  # glibc >= 2.33
    except (AttributeError, OSError, TypeError):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc.mallinfo2.restype = MallInfo2
    return libc


def rss_anon_mb() -> float:
    """Resident anonymous memory (the heaps, tensors, Python's arenas), without the mapped files."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


# Replaces test_rss_flat_over_20k_steps (slow suite: a 20,000-step `workbench train` subprocess of
# the default addition model, VmRSS sampled every second, median over steps 2000-4000 against the
# last 2000, at most +5%).  That run failed at +9.7% with nothing leaking: the C heap's bytes in use
# stayed flat to 0.1 MB, but each eval left 0-30 MB of its freed decoding buffers resident (glibc
# keeps the heap's top under its raised trim threshold), so RSS sat at one of several levels until
# the next eval.  The trainer now trims the heap after every eval (gpt.train.release_free_memory).
# Right after an eval, which the trainer reports to its progress after logging, saving and
# trimming, memory is deterministic; there, over 1,200 steps of a tiny model (~7 s):
#   - what an eval freed is not left resident: a malloc_trim of our own frees < 1 MB (without the
#     trainer's, 10-14 MB at every eval);
#   - RSS does not grow from the early evals to the late ones (+0.1 MB; 1 KB a step kept fails);
#   - nor do the C heap's bytes in use, Python's containers (gc) or its memory blocks (a record
#     dict kept every step is ~9 blocks, which is too little to see in RSS here).
STEPS, EVAL_EVERY = 1200, 100  # an eval scores `workbench train`'s 1,000 held-out problems
EARLY, LATE = (200, 300, 400), (1000, 1100, 1200)  # after warm-up (step 0 has no optimizer state yet)
LIBC = _glibc()


@pytest.fixture
def one_thread():
    """One torch thread: two on two busy cores make a step of this tiny model 6x slower, and the
    promise is the same (malloc_trim trims every thread's arena)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not sys.platform.startswith("linux") or LIBC is None, reason="reads /proc and glibc's heap")
def test_memory_does_not_grow_with_the_steps(tmp_path, capsys, monkeypatch, one_thread):
    evals: list[dict] = []

    class Probe(TrainProgress):
        def update(self, step: int, record: dict) -> None:
            super().update(step, record)
            if "val_loss" not in record:
                return
            rss = rss_anon_mb()
            LIBC.malloc_trim(0)  # what the trainer should have left for it to free: nothing
            heap = LIBC.mallinfo2()
            e = {"step": step, "rss": rss, "freed": rss - rss_anon_mb(), "heap": (heap.uordblks + heap.hblkhd) / 2**20}
            if step in EARLY + LATE:
                gc.collect()
                e["objects"], e["blocks"] = len(gc.get_objects()), sys.getallocatedblocks()
            evals.append(e)

    monkeypatch.setattr(experiments.training, "TrainProgress", Probe)
    t0 = time.perf_counter()
    code, _, err = cli(capsys, "train", "--task", "addition", *TINY, "--set", "train.batch_size=16",
                       "--set", f"train.eval_interval={EVAL_EVERY}", "--steps", STEPS, "--target-acc", "0",
                       "--out", tmp_path / "add", "--quiet", "--device", "cpu")
    assert code == 0, err
    print(f"\n{STEPS:,} steps, an eval every {EVAL_EVERY}: {time.perf_counter() - t0:.1f} s")
    for e in evals:
        counts = f", {e['objects']:,} objects, {e['blocks']:,} blocks" if "objects" in e else ""
        print(f"  step {e['step']:5d}: RSS {e['rss']:7.2f} MB, freed by a trim {e['freed']:5.2f} MB, "
              f"heap in use {e['heap']:8.3f} MB{counts}")
    assert [e["step"] for e in evals] == list(range(0, STEPS + 1, EVAL_EVERY)), "the probe saw other evals"
    at = {e["step"]: e for e in evals}

    def growth(key: str) -> float:
        return max(at[s][key] for s in LATE) - statistics.median(at[s][key] for s in EARLY)

    worst = max(evals, key=lambda e: e["freed"])
    assert worst["freed"] <= 1.0, (f"the eval at step {worst['step']} left {worst['freed']:.1f} MB freed but "
                                   "resident (gpt.train.release_free_memory did not run?)")
    span = f"from steps {EARLY[0]}-{EARLY[-1]} to {LATE[0]}-{LATE[-1]}"
    assert growth("rss") <= 1.0, f"RSS grew by {growth('rss'):.2f} MB {span}"
    assert growth("heap") <= 0.25, f"the C heap's bytes in use grew by {growth('heap'):.3f} MB {span}"
    assert growth("objects") <= 50, f"{growth('objects'):.0f} more Python containers {span}"
    steps = LATE[-1] - EARLY[-1]  # ~0.3 a step without a leak, in torch's own code (torch.save's among it)
    assert growth("blocks") <= steps, f"{growth('blocks'):.0f} more Python memory blocks {span}"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("short") / "add"
    p = workbench_proc("train", "--task", "addition", "--out", run, "--quiet", "--device", "cpu")
    p.communicate()
    assert p.returncode == 0
    return run


@pytest.mark.slow
def test_eval_of_a_million_problems_streams_in_constant_memory(short_run, tmp_path):
    """Median RSS early in the eval vs late in it, the peak reported (the statistic the 20k-step
    run's test used, before test_memory_does_not_grow_with_the_steps replaced it)."""
    p = workbench_proc("eval", short_run, "--n", "1000000", "--format", "json", "--out", tmp_path / "t.json")
    samples = [r for _, r in sample_rss(p, every=0.5)]
    assert p.returncode == 0, p.stderr.read()
    table = json.loads((tmp_path / "t.json").read_text())
    assert table[-1]["n"] == 1_000_000
    k = len(samples)
    early = statistics.median(samples[k // 10 : 3 * k // 10])
    late = statistics.median(samples[4 * k // 5 :])
    print(f"\neval 1M: median RSS {early:.1f} MB at 10-30% done, {late:.1f} MB in the last 20% "
          f"({100 * (late - early) / early:+.2f}%), peak {max(samples):.1f} MB, {k * 0.5:.0f} s, "
          f"accuracy {100 * table[-1]['accuracy']:.3f}%")
    assert late <= early * 1.05
