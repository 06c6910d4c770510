"""Nothing a user types destroys a run (issue 39; docs/reliability.md, "Run folders are safe").

Every test that says "nothing changed" compares the sha256 of every file of every run folder and
exported folder before and after, files added or removed included.  The runs are tiny addition
runs shared by the module; tests that must change a run work on a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import training
from experiments.errors import UserError
from experiments.rundir import RunLock
from helpers import ROOT, TINY, cli

STEPS = ["--steps", "4", "--set", "train.eval_interval=2", "--target-acc", "0", "--quiet", "--device", "cpu"]


def train(out: Path, seed: int = 1) -> None:
    from experiments.cli import main

    assert main(["train", "--task", "addition", *TINY, *STEPS, "--seed", str(seed), "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Two trained runs (A, B) and an export of A (E)."""
    from experiments.cli import main

    root = tmp_path_factory.mktemp("safety")
    train(root / "A", 1)
    train(root / "B", 2)
    assert main(["export", "run", str(root / "A"), "--out", str(root / "E"), "--eval-n", "0", "--device", "cpu"]) == 0
    return {"A": root / "A", "B": root / "B", "E": root / "E"}


@pytest.fixture
def copies(folders, tmp_path) -> dict[str, Path]:
    """Fresh copies of A, B and E, for tests that tamper with them."""
    return {k: Path(shutil.copytree(v, tmp_path / k)) for k, v in folders.items()}


def checksums(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}


def refused(capsys, *args, needle: str = "") -> str:
    code, _, err = cli(capsys, *args)
    assert code == 2, (args, code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert needle in err, err
    return err


# ---- output options never write into a run or an exported folder --------------------------------

def output_cases(f: dict[str, Path]) -> list[tuple[str, ...]]:
    A, B, E = f["A"], f["B"], f["E"]
    return [
        ("eval", B, "--n", "5", "--out", A / "config.json"),
        ("eval", B, "--n", "5", "--out", A / "table.md"),  # a new name: still inside the run
        ("eval", A, "--n", "5", "--samples", A / "metrics.jsonl"),
        ("eval", A, "--n", "5", "--plot", A / "best.png"),
        ("eval", A, "--n", "5", "--by", "a_digits", "--plot", E / "plot.png"),
        ("export", "task", "addition", "--n", "5", "--out", A / "metrics.jsonl"),
        ("export", "task", "addition", "--n", "5", "--out", A / "tb" / "rows.jsonl"),  # below a run: inside it
        ("attention", B, "12+34", "--out", A / "ckpt.pt"),
        ("attention", E, "1+2", "--out", E / "model.safetensors"),
        ("attention", E, "1+2", "--format", "json", "--out", E / "config.json"),
        ("bench", "--steps", "1", "--warmup", "0", "--decode-n", "0", "--json", B / "config.json"),
        ("export", "run", B, "--out", A / "sub"),
        ("export", "run", B, "--out", E / "sub"),
        ("train", "--task", "addition", "--out", A, *STEPS),
        ("train", "--task", "addition", "--out", A / "tasks" / "sub", *STEPS),  # a new run inside a run
        ("train", "--task", "addition", "--out", E / "sub", *STEPS),
        ("train", "--resume", "--out", E, "--steps", "5"),
        ("run", ROOT / "experiments" / "specs" / "variants.toml", "--dry-run", "--out", A),
    ]


@pytest.mark.parametrize("case", range(18))
def test_an_output_path_inside_a_run_or_export_is_refused_before_any_work(folders, capsys, case):
    args = output_cases(folders)[case]
    before = checksums(*folders.values())
    start = time.perf_counter()
    refused(capsys, *args)
    assert checksums(*folders.values()) == before
    assert time.perf_counter() - start < 5  # refused up front, not after the work


def test_what_counts_as_a_run_or_an_export(copies, tmp_path):
    """A run or export is known by workbench's own files, not by one file many projects have."""
    from experiments.outputs import protected_folder

    other = tmp_path / "someone-elses-project"
    other.mkdir()
    for name in ("best.pt", "model.safetensors", "config.json"):
        (other / name).write_text("{}")
    assert protected_folder(other / "table.md") is None
    damaged = copies["A"]
    (damaged / "config.json").write_bytes(b"\xff not json")  # a run with a damaged config is still a run
    assert protected_folder(damaged / "table.md") == (damaged, "a run folder")
    (copies["E"] / "config.json").unlink()
    assert protected_folder(copies["E"] / "x") == (copies["E"], "an exported model folder")


def test_several_runs_write_one_samples_file_each_and_refuse_a_device(folders, capsys, tmp_path):
    before = checksums(*folders.values())
    refused(capsys, "eval", folders["A"], folders["B"], "--n", "5", "--samples", "/dev/null", needle="one file per run")
    assert not Path("/dev/null.0").exists() and not Path("/dev/null.1").exists()
    code, _, err = cli(capsys, "eval", folders["A"], folders["B"], "--n", "3", "--samples", tmp_path / "s.jsonl")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.0.jsonl", "s.1.jsonl"]
    assert cli(capsys, "eval", folders["A"], "--n", "3", "--samples", "/dev/null")[0] == 0  # one run: in place
    assert checksums(*folders.values()) == before


def test_a_bad_plot_suffix_is_refused_before_the_evaluation(folders, capsys, monkeypatch):
    import experiments.commands.runs as cli_module

    def no_eval(*a, **k):
        raise AssertionError("the evaluation ran")

    monkeypatch.setattr(cli_module, "eval_runs", no_eval)
    refused(capsys, "eval", folders["A"], "--n", "5", "--plot", "x.bogus", needle=".png")


def test_bench_json_is_checked_before_the_benchmark(capsys, tmp_path, monkeypatch):
    import experiments.commands.bench as cli_module

    monkeypatch.setattr(cli_module, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))
    refused(capsys, "bench", "--json", tmp_path / "missing" / "b.json", needle="does not exist")
    refused(capsys, "bench", "--json", tmp_path, needle="is a directory")


def test_names_with_control_characters_or_too_long_are_refused_in_one_line(folders, capsys, tmp_path):
    refused(capsys, "eval", folders["A"], "--n", "5", "--out", tmp_path / "a\nb", needle="control characters")
    refused(capsys, "export", "run", folders["A"], "--out", tmp_path / "a\nb", needle="control characters")
    refused(capsys, "eval", folders["A"], "--n", "5", "--out", tmp_path / ("q" * 256 + ".md"), needle="a file name takes at most 255")
    # names that just fit work: the temp file's own name is short, whatever the target's
    long_dir = tmp_path / ("d" * 240)
    long_dir.mkdir()
    code, _, err = cli(capsys, "eval", folders["A"], "--n", "3", "--out", long_dir / ("f" * 248 + ".md"))
    assert code == 0, err
    code, _, err = cli(capsys, "export", "run", folders["A"], "--out", long_dir / ("e" * 250), "--eval-n", "0")
    assert code == 0, err


def test_export_run_refuses_the_current_folder(folders, capsys, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    refused(capsys, "export", "run", folders["A"], "--out", ".", needle="current folder")
    refused(capsys, "export", "run", folders["A"], "--out", "..", needle="current folder")


# ---- a resume continues or refuses --------------------------------------------------------------

def test_a_resume_without_ckpt_but_with_history_is_refused(copies, capsys):
    run = copies["B"]
    (run / "ckpt.pt").unlink()
    before = checksums(run)
    err = refused(capsys, "train", "--resume", "--out", run, needle="best.pt (step 4)")
    assert "metrics up to step 4" in err and "not restarted from step 0" in err
    assert checksums(run) == before
    (run / "best.pt").unlink()  # no checkpoint at all, but the log shows one existed: still refused
    before = checksums(run)
    refused(capsys, "train", "--resume", "--out", run, needle="restore ckpt.pt")
    assert checksums(run) == before


def test_the_refusal_says_how_to_continue_and_that_way_works(copies, capsys):
    run = copies["B"]
    (run / "ckpt.pt").unlink()
    shutil.copy(run / "best.pt", run / "ckpt.pt")
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--steps", "6", "--quiet")
    assert code == 0, err


def test_an_exported_folder_is_read_only_to_train(copies, capsys):
    before = checksums(copies["E"])
    refused(capsys, "train", "--resume", "--out", copies["E"], "--steps", "5", needle="exported model folder")
    assert checksums(copies["E"]) == before


def tamper_metrics_bytes(run: Path) -> None:
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 9\xff}\n')


def tamper_metrics_step(run: Path) -> None:
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": "7"}\n')


def tamper_tb(run: Path) -> None:
    (run / "tb").write_text("not a folder")


def tamper_weights(run: Path) -> None:
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    ckpt["model"].pop("lm_head.weight")
    ckpt["model"]["extra.weight"] = torch.zeros(1)
    torch.save(ckpt, run / "ckpt.pt")


@pytest.mark.parametrize("tamper, needle", [
    (tamper_metrics_bytes, "metrics.jsonl:6: not UTF-8"),
    (tamper_metrics_step, "metrics.jsonl:6: \"step\" must be a whole number from 0 to 1,000,000,000, got \"7\""),
    (tamper_tb, "tb, which is a file"),
    (tamper_weights, "it lacks lm_head.weight; it has no place for extra.weight"),
])
def test_a_failed_resume_changes_nothing_in_the_run(copies, capsys, tamper, needle):
    run = copies["B"]
    tamper(run)
    before = checksums(run)
    extra = ["--log", "tensorboard"] if tamper is tamper_tb else []
    refused(capsys, "train", "--resume", "--out", run, "--steps", "6", *extra, needle=needle)
    assert checksums(run) == before  # config.json's steps included: the rewrite comes after every check


def test_a_killed_runs_torn_last_metrics_line_is_no_error(copies, capsys):
    run = copies["B"]
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a kill mid-line: no newline after it
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--steps", "6", "--quiet")
    assert code == 0, err


def test_losing_the_lock_race_never_removes_the_winners_folder(tmp_path, capsys, monkeypatch):
    """Two `train --out SAME`: the one that made the folder but lost the lock leaves it alone."""
    out = tmp_path / "same"

    def winner_took_it(self):
        (out / ".lock").write_text("12345")  # the winner's lock file, and soon its run
        (out / "config.json").write_text("{}")
        raise UserError(f"{out} is in use by another workbench process (pid 12345)")

    monkeypatch.setattr(RunLock, "acquire", winner_took_it)
    refused(capsys, "train", "--task", "addition", *TINY, *STEPS, "--out", out, needle="in use")
    assert (out / "config.json").exists() and (out / ".lock").exists()
    assert training._make_dir(tmp_path / "new") is True and training._make_dir(tmp_path / "new") is False


# ---- bad files in a run or an exported folder are one clear line -----------------------------------

@pytest.mark.parametrize("config, needle", [
    (b'{"task": {"name": "addition", "include": 5}, "model": {}, "train": {}}', "task.include should be list"),
    (b'{"task": [], "model": {}, "train": {}}', "task should be dict"),
    (b'{"task": {"name": "addition"}, "model": {}, "train": {}, "seed": "x"}', "seed should be int"),
    (b'{"task": {"name": "addition"}, "model": {"n_layer": "2"}, "train": {}}', "n_layer should be int"),
    (b'{"task": {"name": "addition"}, "model": {}, "train": {}, "seed": true}', "seed should be int"),
    (b"\xff\xfe{}", "is corrupt"),
    (b"[" * 100_000 + b"]" * 100_000, "is corrupt"),
    (b"{}", "no 'task' section"),
])
def test_a_bad_config_json_is_one_line_naming_the_file(copies, capsys, config, needle):
    run = copies["A"]
    (run / "config.json").write_bytes(config)
    before = checksums(run)
    for args in [("eval", run, "--n", "5"), ("train", "--resume", "--out", run), ("export", "run", run, "--out",
                 run.parent / "x"), ("train", "--task", "addition", "--init-from", run, "--out", run.parent / "y")]:
        err = refused(capsys, *args, needle=needle)
        assert "config.json" in err
    assert checksums(run) == before


def test_checkpoint_errors_are_whole_and_never_suggest_an_unsafe_load(copies, capsys):
    run = copies["A"]
    torch.save({"format": "workbench-checkpoint", "version": 1, "model": {}, "step": 1, "config": {},
                "obj": Path("a path object")}, run / "ckpt.pt")
    err = refused(capsys, "eval", run, "--n", "5", needle="Python objects besides tensors")
    assert "weights_only" not in err and err.rstrip().endswith(")")
    (run / "ckpt.pt").write_bytes((run / "best.pt").read_bytes()[:1000])
    refused(capsys, "eval", run, "--n", "5", needle="truncated or corrupt")


def test_weights_that_do_not_fit_name_what_differs_and_an_old_run_says_so(copies, capsys):
    run = copies["A"]
    tamper_weights(run)
    err = refused(capsys, "eval", run, "--n", "5", needle="it lacks lm_head.weight")
    assert "Error(s)" not in err and "older workbench" not in err
    cfg = json.loads((run / "config.json").read_text())
    del cfg["format"]  # as every run written before run formats were recorded
    (run / "config.json").write_text(json.dumps(cfg))
    refused(capsys, "eval", run, "--n", "5", needle="made by an older workbench (run format 1, now 2")


def test_init_from_an_exported_folder_starts_from_its_weights(folders, capsys, tmp_path):
    code, out, err = cli(capsys, "train", "--task", "addition", *TINY, *STEPS, "--init-from", folders["E"],
                         "--out", tmp_path / "ft")
    assert code == 0, err


def test_an_exported_folder_with_a_bad_vocab_or_step_is_refused(copies, capsys):
    E = copies["E"]
    (E / "vocab.json").write_text('{"0": 1}')
    refused(capsys, "eval", E, "--n", "5", needle="vocab.json does not match")
    (E / "vocab.json").write_bytes(b"\xff")
    refused(capsys, "eval", E, "--n", "5", needle="vocab.json is corrupt")
    (E / "vocab.json").unlink()
    from safetensors.torch import load_file, save_file

    state = load_file(str(E / "model.safetensors"))
    from safetensors import safe_open

    with safe_open(str(E / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    bad = json.loads(meta["workbench"])
    bad["step"] = True
    save_file(state, str(E / "model.safetensors"), metadata={**meta, "workbench": json.dumps(bad)})
    refused(capsys, "eval", E, "--n", "5", needle="no valid 'workbench' metadata")


def test_export_refuses_a_run_that_is_still_training(folders, capsys, tmp_path):
    lock = RunLock(folders["B"])
    lock.acquire()  # what a live `workbench train` holds
    try:
        refused(capsys, "export", "run", folders["B"], "--out", tmp_path / "x", needle="still training (pid")
    finally:
        lock.release()
    assert not (tmp_path / "x").exists()


# ---- signals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_write_leaves_no_temp_file_and_one_line(folders, tmp_path, sig, code):
    out = tmp_path / "samples.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "experiments", "eval", str(folders["A"]), "--n", "2000000",
                          "--samples", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".*.tmp")):  # the fault must land mid-write: wait for the temp file
        assert p.poll() is None and time.monotonic() < deadline, "the eval never started writing"
        time.sleep(0.05)
    p.send_signal(sig)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == code, err
    assert err.strip() == f"error: interrupted by {signal.Signals(sig).name}; nothing was left half-written"
    assert list(tmp_path.iterdir()) == []


# ---- the property: no command sequence changes a run it was not asked to write -----------------------

TALLY: Counter = Counter()


_PATHS: dict[Path, list[Path]] = {}


def _paths(f: dict[str, Path], scratch: Path) -> st.SearchStrategy[Path]:
    """The candidate output paths, listed once: hypothesis needs the same choices every example."""
    if scratch not in _PATHS:
        _PATHS[scratch] = _candidates(f, scratch)
    return st.sampled_from(_PATHS[scratch])


def _candidates(f: dict[str, Path], scratch: Path) -> list[Path]:
    inside = [p for root in f.values() for p in [root, *sorted(root.rglob("*"))]]
    new_inside = [root / name for root in f.values() for name in ("new.md", "tb/x.png", "tasks/y.json")]
    outside = [scratch / name for name in ("t.md", "t.csv", "t.json", "t.png", "t.jsonl", "t.parquet", "dir/t.md")]
    return inside + new_inside + inside + new_inside + outside + [Path("/dev/null")]  # about 1 in 10 outside


def _command(f: dict[str, Path], path: Path, kind: int, run: Path) -> list[str]:
    return [
        ["eval", run, "--n", "1", "--out", path],
        ["eval", run, "--n", "1", "--samples", path],
        ["eval", run, "--n", "1", "--by", "a_digits", "--plot", path],
        ["export", "task", "addition", "--n", "2", "--out", path],
        ["attention", run, "1+2", "--format", "json", "--out", path],
        ["bench", "--steps", "1", "--warmup", "0", "--decode-n", "0", "--set", "model.n_layer=1",
         "--set", "model.n_embd=16", "--set", "model.n_head=1", "--set", "train.batch_size=2", "--json", path],
        ["export", "run", run, "--out", path, "--eval-n", "0"],
        ["train", "--task", "addition", *TINY, "--steps", "1", "--quiet", "--device", "cpu", "--out", path],
        ["train", "--resume", "--out", path, "--quiet", "--device", "cpu"],
    ][kind]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scratch")


@settings(max_examples=int(os.environ.get("WORKBENCH_SAFETY_EXAMPLES", "500")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_command_sequence_changes_a_run_it_was_not_asked_to_write(folders, scratch, capsys, data):
    """Random sequences of 1-3 commands whose output paths are drawn mostly from the files of
    existing runs and exported folders: every run file stays as it was, and no exit is 1."""
    before = checksums(*folders.values())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(_paths(folders, scratch))
        kind = data.draw(st.integers(0, 8))
        run = data.draw(st.sampled_from([folders["A"], folders["B"], folders["E"]]))
        if kind == 8 and path in folders.values():
            continue  # resuming a run is asked to write it (tests above check what it may change)
        if kind in (5, 7) and scratch in path.parents:
            continue  # a benchmark or a new run outside any run: seconds each, and no run file in reach
        args = _command(folders, path, kind, run)
        code, _, err = cli(capsys, *args)
        TALLY[code] += 1
        assert code in (0, 2), (args, err)
        assert "Traceback" not in err
        TALLY["commands"] += 1
        if code == 0 and args[0] == "train" and scratch in path.parents:  # a new run outside: not again next time
            shutil.rmtree(path)
    after = checksums(*folders.values())
    TALLY["files changed"] += sum(before.get(k) != after.get(k) for k in before.keys() | after.keys())
    assert after == before


def test_zz_report_the_property_tally():
    """Prints what the property test tried (`-s` shows it): the closing note's figures."""
    if TALLY:
        print(f"\nrun-safety property: {TALLY['commands']} commands, exit codes "
              f"{ {k: v for k, v in TALLY.items() if isinstance(k, int)} }, files changed: {TALLY['files changed']}")
    assert TALLY["files changed"] == 0
