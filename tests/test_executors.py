"""Executors under `workbench run`: GPU slots, per-run timeouts and retries, killed runners."""

import json
import os
import signal
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import experiments.sweep.grid as grid
from experiments.errors import UserError, install_hint
from experiments.sweep.executors import LocalExecutor, Placement, RayExecutor, Unplaceable, check_placement, parse_gpus
import experiments.sweep.runjob as runjob
from experiments.sweep.runjob import Job, RunKey
from experiments.sweep.runjob import read_result
from experiments.sweep.specfile import load_spec
from helpers import TINY_SETS, cli, held_task, workbench_proc


def spec_text(steps: int = 20, seeds: str = "[1, 2]", extra: str = "", task: str = "addition") -> str:
    return textwrap.dedent(f"""
        budget_minutes = 5
        seeds = {seeds}
        [base]
        task = "{task}"
        preset = "small"
        steps = {steps}
        target_acc = 0
        resources = {{ num_cpus = 1 }}
        set = {{ {TINY_SETS} }}
        {extra}
        [[variant]]
        name = "fmt"
        grid = {{ "task.reverse_answer" = [true, false] }}
        [[eval]]
        name = "test"
        split = "test"
        n = 30
        [report]
        metrics = ["test.accuracy", "val_loss", "steps"]
    """)


def test_gpu_slots_give_each_run_one_gpu_and_at_most_k_runs_per_gpu(tmp_path, monkeypatch):
    """A fake device list on the CPU: --gpus 0,1 --per-gpu 2 runs 8 runs 4 at a time, each seeing
    one GPU in CUDA_VISIBLE_DEVICES, never more than 2 at once on a GPU."""
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(seeds="[1, 2, 3, 4]"))
    spec = load_spec(path)
    lock, now, most, seen = threading.Lock(), Counter(), Counter(), []

    def fake_execute(job, env, own_group):
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            now[gpu] += 1
            most[gpu] = max(most[gpu], now[gpu])
            most["all"] = max(most["all"], sum(now.values()))
            seen.append(gpu)
        time.sleep(0.3)
        with lock:
            now[gpu] -= 1
        return {"variant": job.key.variant.name, "seed": job.key.seed, "status": "done", "error": "", "wall_s": 0.3}

    monkeypatch.setattr(grid, "execute", fake_execute)
    lines = []
    done = grid.run_grid(spec, tmp_path / "out", echo=lines.append,
                         executor=lambda: LocalExecutor(jobs=1, gpus=(0, 1), per_gpu=2))
    assert len(done) == 8 and sorted(Counter(seen).items()) == [("0", 4), ("1", 4)]
    assert most["0"] == most["1"] == 2 and most["all"] == 4
    assert "4 at a time (2 per GPU on GPUs 0,1)" in lines[0]


ENV_PROBE = """
import json, os, sys
from pathlib import Path
from tasks.addition import AdditionTask

class ProbeTask(AdditionTask):
    name = "probe_addition"

if "train" in sys.argv:  # the train subprocess of a run: record the GPU it was given
    out = sys.argv[sys.argv.index("--out") + 1]
    with open(out + ".env.jsonl", "a") as f:
        f.write(json.dumps({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "omp": os.environ.get("OMP_NUM_THREADS")}) + "\\n")
"""


def steps_clock(metrics: Path, seconds_per_step: float):
    """--timeout's clock as a fake that runs with the trainer, not the wall: each step it logs is
    `seconds_per_step` seconds.  A timeout then lands after the same steps on any machine, however
    long the process takes to start, and the test does not sleep through it."""
    def clock() -> float:
        try:
            with open(metrics, "rb") as f:
                return seconds_per_step * sum(1 for _ in f)
        except FileNotFoundError:
            return 0.0
    return clock


def test_a_timed_out_run_keeps_its_checkpoint_and_its_retry_resumes_on_its_gpu(tmp_path, capsys, monkeypatch):
    """--timeout stops an attempt with SIGTERM (the trainer saves a checkpoint); --retries 1 starts
    it again, from that checkpoint; both attempts time out, so the run is recorded failed.  With
    --gpus 3,5 each attempt's train process sees the GPU slot it took (FIFO: 3, then 5) and the
    spec's resources.num_cpus as its thread count: the environment the real subprocess gets."""
    monkeypatch.setattr("torch.cuda.device_count", lambda: 6)  # --gpus 3,5 must name GPUs torch sees
    run = tmp_path / "out" / "fmt.reverse_answer=true" / "seed1"
    monkeypatch.setattr(runjob, "clock", steps_clock(run / "metrics.jsonl", 3.0))  # --timeout 10: 4 steps
    (tmp_path / "probe.py").write_text(ENV_PROBE)
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(steps=1_000_000, seeds="[1]", extra=f'include = ["{tmp_path / "probe.py"}"]',
                              task="probe_addition"))
    code, text, _ = cli(capsys, "run", spec, "--out", tmp_path / "out", "--only", "fmt.reverse_answer=true",
                        "--timeout", "10", "--retries", "1", "--gpus", "3,5")
    assert code == 0 and "retry 1/1" in text and "0 done, 1 failed" in text
    result = read_result(run)
    assert result["status"] == "failed" and result["error"].startswith("timed out after 10 s")
    log = (run.parent / "seed1.log").read_text()
    # the fault really happened: the first attempt was stopped mid-training and saved, the second resumed
    assert log.count("interrupted at step") == 2 and log.count("$ workbench train --resume") == 1
    assert (run / "ckpt.pt").is_file()
    envs = [json.loads(x) for x in (run.parent / "seed1.env.jsonl").read_text().splitlines()]
    assert envs == [{"cuda": "3", "omp": "1"}, {"cuda": "5", "omp": "1"}]


def test_a_killed_local_runner_takes_its_trainers_down_and_the_rerun_finishes(tmp_path):
    """kill -9 of `workbench run`: its trainers get SIGTERM (lifeline.py) and save a checkpoint
    instead of running on as orphans; the rerun resumes them and finishes every run, once."""
    include, hold = held_task(tmp_path, at=10)
    hold.touch()  # both trainers wait at step 10, so that the kill lands mid-run on any machine
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(steps=60, seeds="[1]", extra=f'include = ["{include}"]', task="held_addition"))
    out = tmp_path / "out"

    def both_at_step_10() -> bool:  # both trainers ten steps in, held
        logs = [len(p.read_text().splitlines()) for p in out.glob("*/seed1/metrics.jsonl")]
        return len(logs) == 2 and min(logs) >= 10

    driver = workbench_proc("run", spec, "--out", out, "--jobs", "2")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not both_at_step_10():
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    logs = list(out.glob("*/seed1.log"))
    deadline = time.monotonic() + 60  # the trainers stop on their own: nobody else signals them
    while time.monotonic() < deadline and sum("interrupted at step" in p.read_text() for p in logs) < 2:
        time.sleep(0.1)
    assert sum("interrupted at step" in p.read_text() for p in logs) == 2, [p.read_text()[-600:] for p in logs]
    hold.unlink()
    rerun = workbench_proc("run", spec, "--out", out, "--jobs", "2")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "2 done, 0 failed" in stdout, stderr
    for log in logs:
        text = log.read_text()
        assert text.count("$ workbench train --task") == 1 and text.count("$ workbench train --resume") == 1
        assert text.count("$ workbench eval") == 1
    df = pd.read_csv(out / "results.csv")
    assert (df["status"] == "done").all() and set(df["steps"]) == {60}


@pytest.mark.parametrize("p, msg", [
    (Placement(executor="slurm"), "--executor 'slurm': choose from local, ray"),
    (Placement(per_gpu=2), "--per-gpu needs --gpus"),
    (Placement(gpus=(0,), jobs=2), "--jobs and --gpus"),
    (Placement(address="auto"), "--address is for --executor ray"),
    (Placement(executor="ray", gpus=(0,)), "--gpus is for --executor local"),
    (Placement(executor="ray", jobs=2), "--jobs is for --executor local"),
    (Placement(gpus=(0,), per_gpu=0), "--per-gpu must be between 1"),
])
def test_bad_placements_are_one_line(p, msg):
    with pytest.raises(UserError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        check_placement(p)


@pytest.mark.parametrize("text", ["", "a", "0,0", "-1", "0,,1"])
def test_bad_gpu_lists_are_refused(text):
    with pytest.raises(UserError, match="--gpus"):
        parse_gpus(text)


def test_run_options_are_checked_before_anything_runs(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text())
    for args, msg in [(["--timeout", "0"], "--timeout must be"), (["--retries", "-1"], "--retries must be"),
                      (["--gpus", "x"], "--gpus 'x'"), (["--executor", "ray", "--jobs", "2"], "--jobs is for")]:
        code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out", *args)
        assert code == 2 and msg in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "out").exists()
    assert parse_gpus("0,2") == (0, 2) and os.cpu_count()


def test_specs_set_device_and_resources_per_run(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(extra='device = "cuda"').replace(
        'resources = { num_cpus = 1 }', 'resources = { num_cpus = 2, num_gpus = 0.5 }').replace(
        'name = "fmt"', 'name = "fmt"\n        resources = { num_gpus = 0.25 }'))
    spec = load_spec(path)
    v = spec.variants[0]
    assert v.run.device == "cuda" and (v.run.resources.num_cpus, v.run.resources.num_gpus) == (2, 0.25)
    args = grid.train_args(v, 1, tmp_path / "r", None)
    assert args[args.index("--device") + 1] == "cuda"
    assert grid.eval_args(spec.evals[0], tmp_path / "r", tmp_path / "e.json", "cuda")[-2:] == ["--device", "cuda"]
    for bad, msg in [('device = "tpu"', "unknown device 'tpu'"),
                     ('resources = { num_gpus = 0 }', "resources.num_gpus: must be a share of one GPU"),
                     ('resources = { num_gpus = 1.5 }', "resources.num_gpus: must be a share of one GPU"),
                     ('resources = { gpus = 1 }', "resources.gpus: unknown key")]:
        path.write_text(spec_text(extra=bad).replace("resources = { num_cpus = 1 }", ""))
        with pytest.raises(UserError, match=msg):
            load_spec(path)


def test_ray_missing_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra looks like
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text())
    code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out", "--executor", "ray")
    assert code == 2 and err == f"error: --executor ray needs ray: {install_hint('ray')}\n"
    assert not (tmp_path / "out").exists()


class _FakeRay:
    """What RayExecutor reads of a cluster: its nodes, and remote() for submissions."""

    def __init__(self, nodes):
        self._nodes = nodes

    def nodes(self):
        return self._nodes

    def remote(self, fn):
        raise AssertionError("an unplaceable run must not reach Ray")


def test_ray_reserves_gpus_for_cuda_runs_and_fails_runs_no_node_can_hold(tmp_path):
    """Ray hides GPUs from a task that reserves none, and keeps a task no node can hold pending
    for ever: a cuda run reserves a GPU, and an unplaceable run is failed at once, saying why."""
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(extra='device = "cuda"').replace("resources = { num_cpus = 1 }", "resources = { num_cpus = 4 }"))
    v = load_spec(path).variants[0]
    job = Job(load_spec(path), RunKey(v, 1), tmp_path, threads=4)
    ex = RayExecutor.__new__(RayExecutor)  # no Ray started: the placement logic alone
    ex.remote, ex.per_gpu = None, None
    ex.ray = _FakeRay([{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 64.0}}])
    assert ex.gpus_for(job) == 1.0
    ex.per_gpu = 4
    assert ex.gpus_for(job) == 0.25
    err = ex.submit(lambda *a: {}, job).exception()
    assert isinstance(err, Unplaceable) and "asking for 4 CPUs and 0.25 GPUs (nodes: 2 CPUs/0 GPUs)" in str(err)
