"""Long runs (slow suite): memory stays flat over a 20k-step run and a 1M-problem eval.

    python -m pytest -m slow tests/test_long_runs.py -s     # prints the figures
"""

import json
import statistics
import time
from pathlib import Path

import pytest

from helpers import workbench_proc

pytestmark = pytest.mark.slow


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def last_step(run: Path) -> int:
    try:
        with open(run / "metrics.jsonl", "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 400))
            return json.loads(f.read().splitlines()[-1])["step"]
    except (OSError, ValueError, IndexError, KeyError):
        return -1


def sample_rss(p, every: float = 1.0, step_of=None) -> list[tuple[int, float]]:
    samples = []
    while p.poll() is None:
        r = rss_mb(p.pid)
        if r is not None:
            samples.append((step_of() if step_of else len(samples), r))
        time.sleep(every)
    return samples


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("long") / "add"
    p = workbench_proc("train", "--task", "addition", "--steps", "20000", "--target-acc", "0",
                       "--out", run, "--quiet", "--device", "cpu")
    samples = sample_rss(p, step_of=lambda: last_step(run))
    assert p.returncode == 0, p.stderr.read()
    return run, samples


def test_rss_flat_over_20k_steps(long_run):
    """The allocator makes RSS jitter by tens of MB from second to second; what must not
    happen is a trend.  Compare the median RSS of steps 2000-4000 (after warm-up) with the
    median of the last 2000 steps, and report the peak too."""
    _, samples = long_run
    early = statistics.median(r for s, r in samples if 2000 <= s < 4000)
    late = statistics.median(r for s, r in samples if s >= 18000)
    peak = max(r for s, r in samples if s >= 2000)
    growth = (late - early) / early
    print(f"\nRSS median, steps 2000-4000: {early:.1f} MB; steps 18000-20000: {late:.1f} MB; "
          f"growth {100 * growth:+.2f}%; peak after warm-up {peak:.1f} MB")
    assert growth <= 0.05


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("short") / "add"
    p = workbench_proc("train", "--task", "addition", "--out", run, "--quiet", "--device", "cpu")
    p.communicate()
    assert p.returncode == 0
    return run


def test_eval_of_a_million_problems_streams_in_constant_memory(short_run, tmp_path):
    """Same measure as above: median RSS early in the eval vs late in it, peak reported."""
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
