"""`workbench check`: the conformance kit from the command line, on good and broken tasks."""

import subprocess
import sys
import textwrap

from helpers import cli

BROKEN = textwrap.dedent('''
    from dataclasses import dataclass
    import numpy as np
    from tasks.base import Problems, Task, TaskConfig
    from tasks.encode import render_strings

    @dataclass(frozen=True)
    class EchoConfig(TaskConfig):
        n: int = 3
        def __post_init__(self):
            if self.n <= 0:
                raise ValueError("n must be positive")

    class Echo(Task):
        name = "echo_broken"
        Config = EchoConfig
        key_columns = ("x",)
        chars = "0123456789=:"
        def sample(self, rng, n, split):
            return Problems(x=rng.integers(0, 10 ** self.config.n, size=n))
        def render(self, p):
            return render_strings([f"{x}=" for x in p["x"]], [str(x) for x in p["x"]])
        def solve(self, p):
            return [int(x) + 1 for x in p["x"]]   # wrong on purpose: not what render writes
        def parse_answer(self, text):
            return int(text) if text.isdigit() else None
''')


def test_check_passes_a_builtin_task(capsys):
    code, out, err = cli(capsys, "check", "--task", "addition", "--examples", "5")
    assert code == 0, err
    assert "11 of 11 checks passed" in out and "ok    position ids (abacus, coupled)" in out
    assert "ok    levels of difficulty" in out


def test_check_names_the_failing_property(tmp_path, capsys):
    f = tmp_path / "echo.py"
    f.write_text(BROKEN)
    code, out, err = cli(capsys, "check", "--task", "echo_broken", "--include", f, "--examples", "5")
    assert code == 1
    assert "FAIL  parse_answer(render) == solve" in out and "ok    train and test disjoint" in out


def test_check_bad_input(capsys):
    code, out, err = cli(capsys, "check", "--task", "calculator", "--set", "task.max_digits=0")
    assert code == 2 and "max_digits" in err
    code, out, err = cli(capsys, "check", "--task", "nope")
    assert code == 2 and "unknown task" in err


def test_new_task_scaffold_trains_and_its_placeholders_fail_check_until_replaced(tmp_path, capsys):
    """Issue 41: the template read as a finished task ("Gcd: reverse a string of digits") and its
    test checked reversal with the template's options.  Its placeholders are marked, `check` fails
    on them by line, and the test it writes follows the task's own solver."""
    code, out, err = cli(capsys, "new-task", "digit_rev", "--dir", tmp_path)
    assert code == 0, err
    assert "replace each TODO(new-task)" in out
    f = tmp_path / "digit_rev.py"
    code, out, err = cli(capsys, "check", "--task", "digit_rev", "--include", f, "--examples", "5")
    marked = [i for i, line in enumerate(f.read_text().splitlines(), 1) if "TODO(new-task)" in line]
    assert code == 1 and "10 of 11 checks passed" in out and "FAIL  new-task placeholders replaced" in out, out
    assert f"(line {', '.join(map(str, marked))})" in out and len(marked) >= 8
    test = tmp_path / "test_digit_rev.py"

    def pytest_of_the_task() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(test)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    p = pytest_of_the_task()
    assert p.returncode == 1 and "1 failed, 1 passed" in p.stdout, p.stdout[-2000:]  # conformance: the markers
    f.write_text(f.read_text().replace("TODO(new-task)", "done:"))  # as if every placeholder were replaced
    code, out, err = cli(capsys, "check", "--task", "digit_rev", "--include", f, "--examples", "5")
    assert code == 0 and "10 of 10 checks passed" in out, out + err
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", "--task", "digit_rev", "--include", f, "--steps", "3",
                         "--set", "model.n_layer=1", "--out", run, "-q")
    assert code == 0, err
    code, out, err = cli(capsys, "eval", run, "--n", "20", "--format", "csv")
    assert code == 0 and "length" in out, err
    p = pytest_of_the_task()
    assert p.returncode == 0, p.stdout[-2000:]
    code, out, err = cli(capsys, "new-task", "digit_rev", "--dir", tmp_path)
    assert code == 2 and "already exists" in err
    code, out, err = cli(capsys, "new-task", "Bad-Name", "--dir", tmp_path)
    assert code == 2 and "must be lowercase" in err


def test_a_task_that_breaks_the_contract_is_one_clear_error(tmp_path, capsys):
    f = tmp_path / "bad.py"
    f.write_text(BROKEN.replace("echo_broken", "no_parse").replace("    def parse_answer(self, text):\n"
                                                                   "        return int(text) if text.isdigit() else None\n", ""))
    code, out, err = cli(capsys, "train", "--task", "no_parse", "--include", f, "--steps", "1", "--out", tmp_path / "r")
    assert code == 2 and "does not implement parse_answer" in err, err
    g = tmp_path / "sig.py"
    g.write_text(BROKEN.replace("echo_broken", "bad_sig").replace("def sample(self, rng, n, split)",
                                                                 "def sample(self, rng, n)"))
    code, out, err = cli(capsys, "check", "--task", "bad_sig", "--include", g)
    assert code == 2 and "sample" in err and "contract" in err, err


def test_check_checks_the_config_train_uses(monkeypatch, capsys):
    """`workbench check --task addition` checks the preset's task options, as `train` applies them."""
    import experiments.commands.problems
    from experiments.runspec import resolve_spec as build_spec
    from tasks.addition import AdditionTask

    seen = []
    monkeypatch.setattr(experiments.commands.problems, "run_checks", lambda cls, config, n: seen.append(config) or [])
    assert cli(capsys, "check", "--task", "addition")[0] == 0
    assert cli(capsys, "check", "--task", "addition", "--set", "task.max_digits=2")[0] == 0
    trained = build_spec("addition", None, [], None, 1337, []).task_config
    assert seen[0] == trained and seen[0] != AdditionTask.Config()  # the preset pads operands
    assert seen[1] == build_spec("addition", None, ["task.max_digits=2"], None, 1337, []).task_config
