"""The Ray executor, with a real local Ray instance (`workbench run --executor ray` starts one with
the machine's CPUs: 2 in CI).  One 4-run spec is run twice: by the local executor, and by Ray,
whose driver is killed with SIGKILL midway and then run again.  The first test checks that the
two results.csv agree (timing aside); the second that the rerun finished the grid with every
run trained once."""

import json
import re
import signal
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import need_module
from experiments.cli import main
from experiments.rundir import training_pid
from experiments.sweep.runjob import read_result
from helpers import TINY_SETS, held_task, workbench_proc

STEPS = 40
TIMING = ["wall_s", "train_time"]


def _midway(out: Path) -> bool:
    """A run has finished, and every other one is training (10 steps logged: held, not done)."""
    runs = [out / v / f"seed{s}" for v in ("fmt.reverse_answer=true", "fmt.reverse_answer=false") for s in (1, 2)]
    done = [(read_result(r) or {}).get("status") == "done" for r in runs]

    def training(r: Path) -> bool:
        try:
            return len((r / "metrics.jsonl").read_text().splitlines()) >= 10
        except OSError:
            return False

    return any(done) and all(d or training(r) for d, r in zip(done, runs))


@pytest.fixture(scope="module")
def grids(tmp_path_factory) -> tuple[Path, int, str]:
    """(folder holding local/ and ray/, runs done when the driver was killed, the rerun's stdout)."""
    need_module("ray", "ray")
    root = tmp_path_factory.mktemp("ray")
    include, hold = held_task(root, at=10, second_wave=True)
    path = root / "spec.toml"
    path.write_text(textwrap.dedent(f"""
        budget_minutes = 5
        seeds = [1, 2]
        [base]
        task = "held_addition"
        include = ["{include}"]
        preset = "small"
        steps = {STEPS}
        target_acc = 0
        resources = {{ num_cpus = 1 }}  # one thread per run under both executors: the same arithmetic
        set = {{ {TINY_SETS} }}
        [[variant]]
        name = "fmt"
        grid = {{ "task.reverse_answer" = [true, false] }}
        [report]  # no [[eval]]: a run is one subprocess, and runjob.execute is the local executor's too
        metrics = ["val_loss", "best_val_loss", "steps", "train_time"]
    """))
    assert main(["run", str(path), "--out", str(root / "local"), "--jobs", "2"]) == 0  # in-process

    # Ray's second wave of runs, started once a run is done, waits at step 10 while `hold` exists, so
    # that the kill cuts it short however fast the machine: on a quiet one, 100 tiny steps finished
    # in the seconds Ray's workers outlive their driver (twice in 2026-12-01's CI walks)
    hold.touch()
    out = root / "ray"
    driver = workbench_proc("run", path, "--out", out, "--executor", "ray")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and driver.poll() is None and not _midway(out):
            time.sleep(0.2)
        if driver.poll() is not None:  # it ended on its own: say why, instead of waiting for nothing
            pytest.fail(f"the Ray driver exited ({driver.returncode}) before the kill: {driver.stderr.read()[-3000:]}")
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()  # (a no-op once it is dead)
        driver.wait(timeout=60)
    # Ray kills the dead driver's workers; their trainers, in process groups of their own, get their
    # lifeline's SIGTERM and stop, held where they were
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(training_pid(p) is not None for p in out.glob("*/seed*")):
        time.sleep(0.2)
    hold.unlink()
    first = sum((read_result(p) or {}).get("status") == "done" for p in out.glob("*/seed*"))
    rerun = workbench_proc("run", path, "--out", out, "--executor", "ray")
    stdout, stderr = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, stderr
    return root, first, stdout


def test_ray_gives_the_results_of_the_local_executor(grids):
    root, _, stdout = grids
    assert "as Ray tasks on a cluster of" in stdout and "0 failed" in stdout
    local, ray = (pd.read_csv(root / d / "results.csv").drop(columns=TIMING) for d in ("local", "ray"))
    assert len(local) == 4 and (local["status"] == "done").all() and set(local["steps"]) == {STEPS}
    # exact: a run cut short resumes bit-identically from the checkpoint of the step it was on
    pd.testing.assert_frame_equal(local, ray)


def test_a_killed_ray_driver_is_finished_by_its_rerun(grids):
    root, first, stdout = grids
    assert 1 <= first < 4  # the fault happened midway: some runs done, some not
    # held, no run still training when the driver died could finish before the rerun
    already = int(re.search(r"\((\d+) already done\)", stdout).group(1))
    assert already == first and f"{4 - already} done, 0 failed" in stdout
    logs = sorted((root / "ray").glob("*/seed*.log"))
    resumed = 0
    for log in logs:
        text = log.read_text()
        # started once (a run the kill cut short resumes from its checkpoint)
        assert text.count("$ workbench train --task") == 1, log
        resumed += text.count("$ workbench train --resume")
        # Usually its lifeline's SIGTERM lets it checkpoint the step it is on ("interrupted at step
        # N; checkpoint saved"); one CI run saw them go without a word (SIGKILL from Ray), and
        # they resumed from their last periodic checkpoint. Either way nothing is lost:
        steps = [json.loads(x)["step"] for x in (log.with_suffix("") / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[-1] == STEPS, log  # nothing logged twice, nothing missing
    assert len(logs) == 4 and resumed == 4 - already >= 1  # the fault happened: the kill cut runs short
