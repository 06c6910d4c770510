"""--include task files: a run keeps a copy in its folder, loads only that copy, and runs it only
when its hash matches and the run was trained here (or the user passes --trust-code).

A run's checkpoint was made by the task code that ran then: a changed file may render,
tokenize or score problems differently.  A run folder can come from anywhere (exported folders
are made to be shared), so its config.json is untrusted input: no code in it runs unless this
machine trained it or the user opts in (experiments/trust.py).  Every test that expects code
not to run gives that code a side effect (a marker file) and checks that it did not happen.
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


def evil(marker) -> str:
    """A task file whose import leaves a marker file: the proof that it ran."""
    return f"open({str(marker)!r}, 'w').write('ran')\n" + TASK.replace("mirror_hash_test", "evil_hash_test")


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """One task file and one run trained with it, plus that run exported."""
    from experiments.cli import main

    root = tmp_path_factory.mktemp("include")
    task_file = root / "mirror.py"
    task_file.write_text(TASK)
    run = root / "run"
    assert main(["train", "--task", "mirror_hash_test", "--include", str(task_file), *TINY, "--steps", "2",
                 "--set", "train.eval_interval=2", "--out", str(run), "--quiet", "--device", "cpu"]) == 0
    assert main(["export", "run", str(run), "--out", str(root / "exported"), "--eval-n", "0", "--device", "cpu"]) == 0
    return task_file, run, root / "exported"


@pytest.fixture
def trained(original, tmp_path):
    """Fresh copies of the run and the exported folder; the task file is put back after each test."""
    task_file, run, exported = original
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copytree(exported, tmp_path / "exported")
    yield task_file, copy
    task_file.write_text(TASK)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums(folder) -> dict:
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_config(run, fn) -> None:
    cfg = json.loads((run / "config.json").read_text())
    fn(cfg["task"])
    (run / "config.json").write_text(json.dumps(cfg))


def one_line(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err


def test_the_run_keeps_a_copy_of_its_task_file_and_records_its_sha256(trained):
    task_file, run = trained
    task = json.loads((run / "config.json").read_text())["task"]
    assert task["include"] == ["tasks/mirror.py"]
    assert (run / "tasks" / "mirror.py").read_bytes() == task_file.read_bytes()
    assert task["include_sha256"] == {"tasks/mirror.py": sha(task_file)}
    assert task["include_from"] == [str(task_file.resolve())]
    assert isinstance(task["include_seal"], str) and len(task["include_seal"]) == 64


def test_the_run_loads_its_own_copy_whatever_happens_to_the_original(trained, capsys):
    task_file, run = trained
    task_file.write_text(TASK + "\n# edited after training\n")
    assert cli(capsys, "eval", run, "--n", "20", "--format", "csv")[0] == 0
    task_file.unlink()
    assert cli(capsys, "eval", run, "--n", "20", "--format", "csv")[0] == 0
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--steps", "4", "--quiet")
    assert code == 0, err


def test_a_changed_copy_is_refused_by_eval_ask_sample_and_resume(trained, capsys, tmp_path):
    _, run = trained
    copy = run / "tasks" / "mirror.py"
    before = sha(copy)
    marker = tmp_path / "ran"
    copy.write_text(evil(marker).replace("evil_hash_test", "mirror_hash_test"))
    after = sha(copy)
    files = checksums(run)
    commands = [("eval", run, "--n", "20"), ("ask", run, "abc"), ("sample", run, "--tokens", "5"),
                ("train", "--resume", "--out", run, "--steps", "4", "--quiet")]
    for args in commands:
        code, out, err = cli(capsys, *args)
        assert code == 2, (args, err)
        one_line(err)
        assert str(copy) in err and before[:12] in err and after[:12] in err, err
        assert "changed since" in err
    assert not marker.exists()  # refused before it ran
    assert checksums(run) == files  # the refused resume changed nothing


def test_a_missing_hash_or_copy_is_refused(trained, capsys):
    _, run = trained
    (run / "tasks" / "mirror.py").unlink()
    code, _, err = cli(capsys, "eval", run, "--n", "20")
    assert code == 2 and "no longer exists" in err, err
    one_line(err)
    edit_config(run, lambda t: t.pop("include_sha256"))
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--quiet")
    assert code == 2 and "records no sha256" in err, err
    one_line(err)


@pytest.mark.parametrize("where", ["outside", "parent", "absolute"])
def test_a_task_file_outside_the_run_folder_never_runs(trained, capsys, tmp_path, monkeypatch, where):
    """config.json naming a file elsewhere (relative paths once resolved from the current folder)."""
    _, run = trained
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.py"
    bad.write_text(evil(marker))
    monkeypatch.chdir(tmp_path)  # where a relative path would have been resolved from
    name = {"outside": "evil.py", "parent": "tasks/../../evil.py", "absolute": str(bad)}[where]

    def point(task):
        task.update(name="evil_hash_test", include=[name], include_sha256={name: sha(bad)})

    edit_config(run, point)
    code, _, err = cli(capsys, "eval", run, "--n", "5")
    assert code == 2, err
    one_line(err)
    assert not marker.exists()


def test_a_downloaded_folder_runs_its_code_only_with_trust_code(trained, capsys, tmp_path, monkeypatch):
    """An exported folder whose task file was swapped, its hash and seal with it: the seal does not
    verify, so nothing runs unless the user says --trust-code."""
    _, run = trained
    exported = tmp_path / "exported"
    marker = tmp_path / "ran"
    (exported / "tasks" / "evil.py").write_text(evil(marker))
    edit_config(exported, lambda t: t.update(name="evil_hash_test", include=["tasks/evil.py"],
                                             include_sha256={"tasks/evil.py": sha(exported / "tasks" / "evil.py")}))
    for args in [("eval", exported, "--n", "5"), ("ask", exported, "ab"), ("export", "run", exported, "--out",
                 tmp_path / "again"), ("attention", exported, "ab", "--out", tmp_path / "a.json")]:
        code, _, err = cli(capsys, *args)
        assert code == 2 and "--trust-code" in err, (args, err)
        one_line(err)
    assert not marker.exists()
    cli(capsys, "eval", exported, "--n", "5", "--trust-code")  # the user's choice: now it runs
    assert marker.exists()


def test_a_run_from_another_machine_needs_trust_code(trained, capsys, tmp_path, monkeypatch):
    _, run = trained
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "another-machine"))
    code, _, err = cli(capsys, "eval", run, "--n", "20")
    assert code == 2 and "was not trained on this machine" in err and "--trust-code" in err, err
    one_line(err)
    assert cli(capsys, "eval", run, "--n", "20", "--format", "csv", "--trust-code")[0] == 0
    from experiments import load_run

    assert load_run(run, device="cpu", trust_code=True).task.name == "mirror_hash_test"


def test_the_cli_refuses_a_changed_copy_in_one_line(trained):
    _, run = trained
    copy = run / "tasks" / "mirror.py"
    copy.write_text(TASK.replace("string reversal, from", "string reversal (edited), from"))
    p = subprocess.run([sys.executable, "-m", "experiments", "eval", str(run), "--n", "20"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert f"task file {copy} has changed since run {run} was trained" in p.stderr


NEW_VERSION = TASK.replace('''    description = "string reversal, from an include file"''', '''    description = "string reversal, from an include file"
    buckets = ("length", "odd")  # added after training

    def sample(self, rng, n, split):
        p = super().sample(rng, n, split)
        return Problems(seq=p["seq"], length=p["length"], odd=p["length"] % 2)''').replace(
    "from tasks.reverse import ReverseTask", "from tasks.base import Problems\nfrom tasks.reverse import ReverseTask")

def test_eval_include_rescores_with_a_new_version_on_purpose_and_says_so(trained, tmp_path, capsys):
    """Issue 41: a bucket could not be added after training.  The run keeps scoring with its own
    copy, whatever happens to the original file; `eval --include NEW.py` scores with a new version
    on purpose, in one line on stderr, and leaves the run's folder as it was."""
    task_file, run = trained
    task_file.write_text(TASK + "\n# a comment edited after training\n")  # the original: no longer locks the run
    code, out, err = cli(capsys, "eval", run, "--n", "40", "--by", "odd", "--format", "json", "--device", "cpu")
    assert code == 2 and "unknown column 'odd'" in err  # the run's own copy has no such bucket
    before = checksums(run)
    assert '"odd")' in NEW_VERSION  # the new version has the bucket
    new = tmp_path / "mirror_v2.py"
    new.write_text(NEW_VERSION)
    code, out, err = cli(capsys, "eval", run, "--n", "40", "--by", "odd", "--format", "json", "--device", "cpu",
                         "--include", new)
    assert code == 0, err
    assert err == f"note: scoring with the task in {new}, not the copy each run was trained with\n"
    rows = json.loads(out)
    assert [r["odd"] for r in rows] == ["0", "1", "all"] and rows[-1]["n"] == 40
    assert checksums(run) == before  # nothing in the run changed
