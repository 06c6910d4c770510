"""The files `workbench report` and `workbench run` read back, and the options of `run`, are
input: damaged or hostile, each ends in one `error:` line naming the file (and line) and exit
code 2, never an internal error (exit 1), a hang or minutes of work.

The output folders here are made by hand with the writers `workbench run` uses (result.json by
runjob.write_result, metrics.jsonl by gpt.checkpoint.MetricsLog, eval files in the shape of
`workbench eval --format json`), so that nothing trains and each test takes a fraction of a second.
"""

from __future__ import annotations

import json
import socket
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import need_module
from experiments.errors import UserError
from experiments.sweep.executors import Placement, check_placement, check_reachable
from experiments.sweep.grid import plan, run_grid
from experiments.sweep.runjob import write_result
from experiments.sweep.specfile import load_spec
from experiments.sweep.specparse import MAX_SPEC_BYTES
from experiments.sweep.spectypes import MAX_RUNS
from gpt.checkpoint import MetricsLog
from helpers import cli

SPEC = textwrap.dedent("""\
    budget_minutes = 1
    seeds = [1]
    [base]
    task = "addition"
    preset = "small"
    steps = 2
    [[eval]]
    name = "test"
    split = "test"
    n = 20
    by = ["a_digits"]
    [report]
    metrics = ["test.accuracy", "val_loss", "steps", "train_time", "steps_to:val_acc>=0.5"]
""")
RECORDS = [{"step": 0, "train_loss": 2.6, "val_loss": 2.6, "val_acc": 0.0},
           {"step": 1, "loss": 2.5, "lr": 1e-4, "train_time": 0.1},
           {"step": 2, "loss": 2.4, "train_time": 0.2, "train_loss": 2.4, "val_loss": 2.45, "val_acc": 0.5,
            "stop": "steps"}]
EVAL = [{"a_digits": "1", "n": 10, "correct": 5, "accuracy": 0.5, "ci_low": 0.2, "ci_high": 0.8},
        {"a_digits": "all", "n": 10, "correct": 5, "accuracy": 0.5, "ci_low": 0.2, "ci_high": 0.8}]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """The output folder of a finished one-run spec: spec.toml, base/seed1 with its files."""
    root = tmp_path / "out"
    run = root / "base" / "seed1"
    run.mkdir(parents=True)
    (root / "spec.toml").write_text(SPEC)
    write_result(run, {"variant": "base", "seed": 1, "status": "done", "error": "", "wall_s": 1.5})
    log = MetricsLog(run / "metrics.jsonl")
    for r in RECORDS:
        log.append(r)
    log.close()
    (run / "eval-test.json").write_text(json.dumps(EVAL, indent=1))
    return root


def run_of(out: Path) -> Path:
    return out / "base" / "seed1"


def one_error(code: int, err: str, *parts: str) -> None:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for p in parts:
        assert p in err, (p, err)


def test_a_good_output_folder_reports(out, capsys):
    code, text, err = cli(capsys, "report", out)
    assert code == 0, err
    md = (out / "results.md").read_text()
    assert "| base | 1 | 50.00% |" in md  # test.accuracy from the eval file's 'all' row


# ---- metrics.jsonl ------------------------------------------------------------------------------

@pytest.mark.parametrize("tail, line, says", [
    (b"\xff\xfe garbage\n", 4, "not UTF-8"),
    (b'{"loss": 1.0}\n', 4, '"step" must be a whole number from 0 to 1,000,000,000, got none'),
    (b'{"step": "abc"}\n', 4, 'got "abc"'),
    (b'{"step": true}\n', 4, "got true"),
    (b'{"step": 7.5}\n', 4, "got 7.5"),
    (b'{"step": "7"}\n', 4, 'got "7"'),
    (b'{"step": -1}\n', 4, "got -1"),
    (b'{"step": 10000000000000000000000}\n', 4, "got 10000000000000000000000"),
    (b'{"step": 3, "lo\xe2\x82', 4, "not UTF-8"),  # the trainer writes ASCII: no tear cuts a character
    (b"[1, 2]\n", 4, "expected a JSON object, got an array"),
    (b'{"step": 3, "val_loss": "x"}\n', 4, '"val_loss" must be a number'),
    (b'{"step": 3, "val_acc": null}\n', 4, '"val_acc" must be a number'),  # steps_to:val_acc compares it
    (b'{"step": 3, "lo\n{"step": 4}\n', 4, "not a JSON record"),  # torn, then written after: not the last line
    (b"[" * 100_000 + b"\n", 4, "not a JSON record"),
])
def test_a_damaged_metrics_log_names_its_line(out, capsys, tail, line, says):
    with open(run_of(out) / "metrics.jsonl", "ab") as f:
        f.write(tail)
    code, _, err = cli(capsys, "report", out)
    one_error(code, err, f"metrics.jsonl:{line}: ", says)


def test_a_torn_last_line_is_skipped_but_a_bad_whole_one_is_not(out, capsys):
    path = run_of(out) / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"step": 3, "val_lo')  # a run being written, or killed mid-line
    assert cli(capsys, "report", out)[0] == 0
    path.write_bytes(path.read_bytes().rsplit(b"\n", 1)[0] + b'\n{"step": "x"}')  # whole JSON, no newline
    one_error(*cli(capsys, "report", out)[::2], "metrics.jsonl:4: ")


# ---- result.json --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("[]", "expected a JSON object, got an array"),
    ("{}", '"status" must be "done" or "failed", got null'),
    ("[1]", "got an array"),
    ('{"status": 5}', "got 5"),
    ('{"status": "done", "wall_s": "x"}', '"wall_s" must be a number of seconds, got "x"'),
    ('{"status": "done", "wall_s": true}', '"wall_s" must be'),
    ('{"status": "failed", "error": ["x"]}', '"error" must be a string'),
    ('{"status": "done", "seed": "1"}', '"seed" must be an integer'),
    ('{"status": "do', "result.json:1: not valid JSON"),
    (b'{"status": "\xff"}', "result.json:1: not UTF-8"),
])
def test_a_damaged_result_record_is_one_line(out, capsys, text, says):
    path = run_of(out) / "result.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = cli(capsys, "report", out)
    one_error(code, err, "result.json", says)


def test_run_redoes_a_run_whose_result_record_is_damaged(out, capsys):
    """`workbench run` reads result.json to skip done runs: a damaged one means not done."""
    (run_of(out) / "config.json").write_text("{}")  # it trained
    (run_of(out) / "result.json").write_text("[1]")
    code, text, err = cli(capsys, "run", out / "spec.toml", "--out", out, "--dry-run")
    assert code == 0 and "(0 already done)" in text and "[resume]" in text, err


# ---- eval-E.json --------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, says", [
    ([{**EVAL[0]}, {**EVAL[1], "accuracy": "abc"}], 'row 2: "accuracy" must be a number, got "abc"'),
    ([{**EVAL[0], "accuracy": 1.5}], '"accuracy" must be between 0 and 1'),
    ([{**EVAL[0], "n": [10]}], 'row 1: "n" must be a number'),
    ({"accuracy": 0.5}, "expected a non-empty array of rows, got an object"),
    ([], "got an empty array"),
    ([1], "row 1 is a number, not an object"),
    (5, "got a number"),
    ([{"n": 3}], 'neither "accuracy" nor "loss"'),
    ([{"accuracy": 0.5}], "no column 'a_digits'"),  # made by an [[eval]] with another `by`
])
def test_a_damaged_eval_table_is_one_line(out, capsys, rows, says):
    (run_of(out) / "eval-test.json").write_text(json.dumps(rows))
    code, _, err = cli(capsys, "report", out)
    one_error(code, err, "eval-test.json: ", says, "result.json")  # and how to redo it


def test_a_loss_eval_needs_no_bucket_columns(out, capsys):
    (run_of(out) / "eval-test.json").write_text(json.dumps([{"split": "test", "n": 9, "tokens": 90,
                                                             "loss": 2.0, "ppl": 7.4}]))
    assert cli(capsys, "report", out)[0] == 0


# ---- the output folder's own files ------------------------------------------------------------

def test_a_binary_spec_copy_names_the_file_and_line(out, capsys):
    (out / "spec.toml").write_bytes(b"budget_minutes = 1\n" + bytes(range(256)))
    one_error(*cli(capsys, "report", out)[::2], "spec.toml:3: not UTF-8")  # byte 0x80, after 0x0a


def test_the_reports_notes_tolerate_garbage(out, capsys):
    """timing.jsonl and spec.source only feed the report's header: bad lines are left out."""
    (out / "timing.jsonl").write_bytes(b'[1]\n{"elapsed_s": "x"}\n\xff\n{"elapsed_s": 60, "how": "1 at a time"}\n')
    (out / "spec.source").write_bytes(b"\xff\xfe")
    assert cli(capsys, "report", out)[0] == 0
    assert "1 invocation(s)" in (out / "results.md").read_text()


# ---- spec files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body, says", [
    (b'budget_minutes = 1\ndescription = "caf\xe9"\n', "spec.toml:2: not UTF-8 text (byte 0xe9)"),
    (bytes(range(256)), "spec.toml:2: not UTF-8 text (byte 0x80)"),
    (b"x = " + b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    (b"x = " + b"{a = " * 5_000 + b"1" + b"}" * 5_000, "nested too deep"),
    (b"x = " + b"[" * 100_000, "nested too deep"),
])
def test_a_binary_or_deeply_nested_spec_is_one_line_at_once(tmp_path, capsys, body, says):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(body)
    start = time.perf_counter()
    with pytest.raises(UserError, match="nested|UTF-8"):
        load_spec(spec)
    assert time.perf_counter() - start < 1.0  # about a millisecond (RecursionError comes fast)
    one_error(*cli(capsys, "run", spec, "--dry-run")[::2], str(spec), says)


def test_a_huge_spec_file_is_refused_unread(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b"# " + b"x" * MAX_SPEC_BYTES + b"\n")
    with pytest.raises(UserError, match="larger than 4 MiB"):
        load_spec(spec)


def grid_spec(tmp_path: Path, a: int, b: int, seeds: str = "[1]") -> Path:
    spec = tmp_path / "grid.toml"
    spec.write_text(textwrap.dedent(f"""\
        budget_minutes = 1
        seeds = {seeds}
        [base]
        task = "addition"
        steps = 10
        [[variant]]
        name = "g"
        grid = {{ "train.lr" = {[1e-3 + i * 1e-6 for i in range(a)]}, "train.batch_size" = {list(range(1, b + 1))} }}
    """))
    return spec


@pytest.mark.parametrize("a, b, seeds, runs", [(1000, 100, "[1]", "100,000"), (1000, 1000, "[1, 2]", "2,000,000"),
                                               (100, 50, "[1, 2, 3]", "15,000")])
def test_a_spec_over_the_run_limit_is_refused_before_expanding(tmp_path, capsys, a, b, seeds, runs):
    spec = grid_spec(tmp_path, a, b, seeds)
    start = time.perf_counter()
    with pytest.raises(UserError, match=f"expands to {runs} runs .* at most {MAX_RUNS:,}"):
        load_spec(spec)
    assert time.perf_counter() - start < 1.0  # counted, not expanded: milliseconds
    one_error(*cli(capsys, "run", spec, "--dry-run")[::2], f"{spec}:6: variant: the spec expands to {runs} runs")


def test_planning_at_the_run_limit_is_linear(tmp_path):
    """10,000 runs: parsed, planned and listed (--dry-run) in about a second here; the old
    duplicate-name check and `k in todo` list scans took 10 s at this size, minutes at 10x.
    Checked as growth, not as a time: 4x the runs take under 10x the time (linear: 4x; the old
    quadratic scans: 16x), each size the best of two, so a busy machine slows both alike."""
    def best_time(side: int) -> float:
        (tmp_path / str(side)).mkdir()
        spec_path = grid_spec(tmp_path / str(side), side, side)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            spec = load_spec(spec_path)
            lines: list[str] = []
            run_grid(spec, tmp_path / str(side) / "out", dry_run=True, echo=lines.append)
            times.append(time.perf_counter() - start)
        assert len(plan(spec)) == side * side and len(lines) == side * side + 1
        return min(times)

    quarter, full = best_time(50), best_time(100)  # 2,500 and MAX_RUNS = 10,000 runs
    assert 100 * 100 == MAX_RUNS
    assert full < 10 * quarter, f"{full:.2f} s for 10,000 runs against {quarter:.2f} s for 2,500"


# ---- workbench run options --------------------------------------------------------------------

@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(SPEC + '[[variant]]\nname = "a"\n[[variant]]\nname = "b"\n')
    return p


@pytest.mark.parametrize("only", ["", "  "])
def test_an_empty_only_is_refused(spec, tmp_path, capsys, only):
    code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "o", "--only", only, "--dry-run")
    one_error(code, err, "--only", "is empty", "the variants are a, b")


@pytest.mark.parametrize("address, says", [
    ("garbage:99999", "the port must be between 1 and 65535, got 99999"),
    ("127.0.0.1:0", "got 0"),
    ("127.0.0.1:65536", "got 65536"),
    ("127.0.0.1", "expected auto or HOST:PORT"),
    ("127.0.0.1:x", "expected auto or HOST:PORT"),
    ("", "expected auto or HOST:PORT"),
    ("a b:1", "expected auto or HOST:PORT"),
])
def test_a_malformed_ray_address_is_refused_before_ray_starts(spec, tmp_path, capsys, address, says):
    need_module("ray", "ray")
    code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "o", "--executor", "ray", "--address", address)
    one_error(code, err, "--address", says)
    assert not (tmp_path / "o").exists()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (just freed by us)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_fails_in_seconds(spec, tmp_path, capsys):
    need_module("ray", "ray")
    address = f"127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "o", "--executor", "ray", "--address", address)
    one_error(code, err, f"--address {address}: no Ray cluster answers there")
    assert time.perf_counter() - start < 30 and not (tmp_path / "o").exists()


def test_a_listening_address_passes_the_probe():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}")
        check_reachable("auto")  # Ray finds the cluster itself: nothing to probe


def test_gpus_this_machine_lacks_are_refused(spec, tmp_path, capsys, monkeypatch):
    seen = torch.cuda.device_count()  # 0 on a CPU-only machine: --gpus 0 used to train on the CPU in silence
    code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "o", "--gpus", str(seen), "--dry-run")
    one_error(code, err, f"torch sees {seen} CUDA GPU", f"GPU {seen} is not one of them")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_placement(Placement(gpus=(1, 0))).gpus == (1, 0)
    with pytest.raises(UserError, match=r"--gpus 0,2: torch sees 2 CUDA GPUs on this machine \(indices 0 to 1\)"):
        check_placement(Placement(gpus=(0, 2)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match="torch sees 0 CUDA GPUs"):
        check_placement(Placement(gpus=(0,), per_gpu=2))
