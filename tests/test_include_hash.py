"""--include files are recorded by sha256; a run refuses a task file that changed since training.

A run's checkpoint was made by the task code that ran then: a changed file may render,
tokenize or score problems differently, and eval, ask, sample and --resume would then
report numbers for code that never trained.  Runs recorded before hashes were kept still load.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT, TINY, cli

TASK = textwrap.dedent('''
    """String reversal under another name: a task defined in an --include file."""
    from tasks.reverse import ReverseTask


    class MirrorHashTest(ReverseTask):
        name = "mirror_hash_test"
        description = "string reversal, from an include file"
''')


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """One task file and one run trained with it (a task name may come from one file only)."""
    from experiments.cli import main

    root = tmp_path_factory.mktemp("include")
    task_file = root / "mirror.py"
    task_file.write_text(TASK)
    run = root / "run"
    assert main(["train", "--task", "mirror_hash_test", "--include", str(task_file), *TINY, "--steps", "2",
                 "--set", "train.eval_interval=2", "--out", str(run), "--quiet", "--device", "cpu"]) == 0
    return task_file, run


@pytest.fixture
def trained(original, tmp_path):
    """A fresh copy of the run; the task file is put back as it was after each test."""
    task_file, run = original
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    yield task_file, copy
    task_file.write_text(TASK)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_config_records_each_include_files_sha256(trained):
    task_file, run = trained
    task = json.loads((run / "config.json").read_text())["task"]
    path = str(task_file.resolve())
    assert task["include"] == [path]
    assert task["include_sha256"] == {path: sha(task_file)}


def test_a_changed_task_file_is_refused_by_eval_ask_sample_and_resume(trained, capsys):
    task_file, run = trained
    before = sha(task_file)
    task_file.write_text(TASK + "\n# edited after training\n")
    after = sha(task_file)
    commands = [("eval", run, "--n", "20"), ("ask", run, "abc"), ("sample", run, "--tokens", "5"),
                ("train", "--resume", "--out", run, "--steps", "4", "--quiet")]
    for args in commands:
        code, out, err = cli(capsys, *args)
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
        assert str(task_file.resolve()) in err and before[:12] in err and after[:12] in err, err
        assert "changed since" in err
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 2  # the refused resume changed nothing
    task_file.write_text(TASK)  # the version it was trained with: accepted again
    assert cli(capsys, "eval", run, "--n", "20", "--format", "csv")[0] == 0
    assert cli(capsys, "train", "--resume", "--out", run, "--steps", "4", "--quiet")[0] == 0


def test_runs_without_a_recorded_hash_still_load(trained, capsys):
    task_file, run = trained
    cfg = json.loads((run / "config.json").read_text())
    del cfg["task"]["include_sha256"]  # as every run made before hashes were recorded
    (run / "config.json").write_text(json.dumps(cfg))
    task_file.write_text(TASK + "\n# edited after training\n")
    code, _, err = cli(capsys, "eval", run, "--n", "20", "--format", "csv")
    assert code == 0, err  # nothing to compare with: no check


def test_the_cli_refuses_a_changed_file_in_one_line(trained):
    task_file, run = trained
    task_file.write_text(TASK.replace("string reversal, from", "string reversal (edited), from"))
    p = subprocess.run([sys.executable, "-m", "experiments", "eval", str(run), "--n", "20"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert f"task file {task_file.resolve()} has changed since run {run} was trained" in p.stderr


def test_a_missing_task_file_is_refused(trained, capsys):
    task_file, run = trained
    task_file.unlink()
    for args in [("eval", run, "--n", "20"), ("train", "--resume", "--out", run, "--quiet")]:
        code, _, err = cli(capsys, *args)
        assert code == 2 and "no longer exists" in err and err.count("\n") == 1, err
