"""The Ray executor, with a real local Ray instance: the same results as the local pool, and a
killed driver whose rerun finishes the grid with nothing trained or evaluated twice."""

import json
import signal
import textwrap
import time
from pathlib import Path

import pandas as pd

from conftest import need_module
from experiments.executors import RayExecutor
from experiments.grid import run_grid
from experiments.results import build_report
from experiments.runjob import read_result
from experiments.spec import load_spec
from helpers import TINY_SETS, cli, workbench_proc

TIMING = ["wall_s", "train_time"]


def write_spec(tmp_path, steps: int, evals: bool = True) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(f"""
        budget_minutes = 5
        seeds = [1, 2]
        [base]
        task = "addition"
        preset = "small"
        steps = {steps}
        target_acc = 0
        resources = {{ num_cpus = 1 }}  # one thread per run under both executors: the same arithmetic
        set = {{ {TINY_SETS} }}
        [[variant]]
        name = "fmt"
        grid = {{ "task.reverse_answer" = [true, false] }}
        [report]
        metrics = ["val_loss", "steps", "train_time"]
    """) + ('[[eval]]\nname = "test"\nsplit = "test"\nn = 30\n' if evals else ""))
    return path


def test_ray_gives_the_results_of_the_local_executor(tmp_path, capsys):
    need_module("ray", "ray")
    path = write_spec(tmp_path, steps=20, evals=False)  # the kill test below runs evals under Ray
    spec = load_spec(path)
    assert cli(capsys, "run", path, "--out", tmp_path / "local", "--jobs", "2")[0] == 0
    lines = []
    run_grid(spec, tmp_path / "ray", echo=lines.append, executor=lambda: RayExecutor(None, None, num_cpus=2),
             then=lambda: build_report(tmp_path / "ray", spec, echo=lines.append))
    assert "as Ray tasks on a cluster of 2 CPUs" in lines[0] and "4 done, 0 failed" in "\n".join(lines)
    local, ray = (pd.read_csv(tmp_path / d / "results.csv").drop(columns=TIMING) for d in ("local", "ray"))
    assert len(local) == 4 and (local["status"] == "done").all()
    pd.testing.assert_frame_equal(local, ray)


def test_a_killed_ray_driver_is_finished_by_its_rerun(tmp_path):
    need_module("ray", "ray")
    path = write_spec(tmp_path, steps=150)
    out = tmp_path / "out"
    driver = workbench_proc("run", path, "--out", out, "--executor", "ray")
    try:
        deadline = time.monotonic() + 180
        # kill it once a run has finished and others are training
        while time.monotonic() < deadline and not (
                any((read_result(p.parent) or {}).get("status") == "done" for p in out.glob("*/seed*/config.json"))
                and sum(1 for _ in out.glob("*/seed*/metrics.jsonl")) >= 3):
            time.sleep(0.2)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    results = [read_result(p) for p in out.glob("*/seed*")]
    first = sum((r or {}).get("status") == "done" for r in results)
    assert 1 <= first < 4  # the fault happened midway: some runs done, some not

    rerun = workbench_proc("run", path, "--out", out, "--executor", "ray")
    stdout, stderr = rerun.communicate(timeout=400)
    assert rerun.returncode == 0 and f"({first} already done)" in stdout and "0 failed" in stdout, stderr
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and (df["status"] == "done").all() and set(df["steps"]) == {150}
    for log in out.glob("*/seed*.log"):
        text = log.read_text()
        # started once (a run the kill cut short resumes from its checkpoint), evaluated once
        assert text.count("$ workbench train --task") == 1 and text.count("$ workbench eval") == 1, log
        steps = [json.loads(x)["step"] for x in (log.with_suffix("") / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[-1] == 150, log  # nothing logged twice, nothing missing
