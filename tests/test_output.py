"""Output that can be piped: tables never cut or fold a name or figure, `--format json` for
`tasks` and `presets`, progress lines between evals, atomic `eval --out/--samples/--plot` files."""

import errno
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import catalog, console
from experiments import outputs, tables
from experiments.presets import PRESETS
from experiments.errors import UserError
from gpt.progress import TrainProgress
from helpers import cli, forked_run

CURRENT = {name: p for name, p in PRESETS.items() if not p.archived}  # what `workbench presets` lists
# long-ish names: at 80 columns rich used to cut them to "addition-2…"
NAMES = ("addition-20260101-120000-long-name-a", "addition-20260101-120000-long-name-b")


def piped(*args: str, columns: str = "80") -> subprocess.CompletedProcess:
    """The CLI in a process of its own whose stdout is not a terminal (as in `workbench tasks | grep
    ...`), with an 80-column $COLUMNS."""
    return forked_run(*args, env={"COLUMNS": columns}, timeout=600)


def whole(word: str, text: str) -> bool:
    """`word` appears in `text` with no name character glued to either end (so not cut or folded)."""
    return re.search(rf"(?<![\w.%-]){re.escape(word)}(?![\w.%-])", text) is not None


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny addition runs (different seeds, so different figures) with long directory names."""
    from experiments.cli import main

    root = tmp_path_factory.mktemp("runs")
    runs = []
    for seed, name in zip((1, 2), NAMES):
        out = root / name
        code = main(["train", "--task", "addition", "--steps", "20", "--seed", str(seed),
                     "--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.n_embd=32",
                     "--set", "model.block_size=32", "--set", "train.batch_size=16", "--set", "train.eval_iters=2",
                     "--out", str(out), "-q", "--target-acc", "0", "--device", "cpu"])
        assert code == 0
        runs.append(out)
    return runs


def _figures(records: list[dict]) -> list[str]:
    out = []
    for r in records:
        lo, hi = tables.pct(r["ci_low"]), tables.pct(r["ci_high"])
        out += [str(r["n"]), str(r["correct"]), tables.pct(r["accuracy"]), lo, hi, f"{lo}–{hi}"]
    return out


# ---- piped tables ------------------------------------------------------------------------------

def test_piped_tasks_table_keeps_every_name_and_description_whole():
    from experiments.registry import task_class

    p = piped("tasks")
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout
    # the tasks a fresh process knows (earlier tests may have registered --include tasks in this one)
    listed = [t["name"] for t in json.loads(piped("tasks", "--format", "json").stdout)]
    assert set(listed) >= {"addition", "calculator", "multiplication", "shakespeare"}
    for name in listed:
        assert whole(name, p.stdout), name
        # `workbench tasks | grep NAME` finds the task's row, description included, on one line
        desc = task_class(name).description
        assert any(whole(name, line) and desc in line for line in p.stdout.splitlines()), name


def test_piped_presets_keep_every_name_and_description_whole():
    p = piped("presets")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for preset in CURRENT.values():
        assert any(line.startswith(f"{preset.name} ") and preset.description in line for line in lines), preset.name


def test_piped_multi_run_eval_keeps_run_names_and_every_figure_whole(two_runs):
    args = ["eval", *two_runs, "--n", "300", "--by", "a_digits,b_digits"]
    p = piped(*args)
    assert p.returncode == 0, p.stderr
    j = piped(*args, "--format", "json")
    assert j.returncode == 0, j.stderr
    records = json.loads(j.stdout)
    assert "…" not in p.stdout
    for name in NAMES:
        assert whole(name, p.stdout), name
    for fig in _figures(records):
        assert whole(fig, p.stdout), fig
    # one row per bucket, both runs side by side on it: each row shows two intervals
    intervals = re.findall(r"\d+\.\d\d%–\d+\.\d\d%", p.stdout)
    assert len(intervals) == len(records)


def test_narrow_terminal_keeps_key_columns_whole(two_runs, capsys, monkeypatch):
    """On a terminal (simulated) of 80 columns: task names, run names, bucket keys, accuracies and
    intervals stay whole and lines fit; the description column wraps instead."""
    import tasks as registry

    monkeypatch.setattr(console, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    catalog.list_tasks([])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for name in registry.available():
        assert whole(name, out), name
    code, out, err = cli(capsys, "eval", *two_runs, "--n", "300", "--by", "a_digits")
    assert code == 0, err
    # too wide side by side: one table per run, each within the terminal, under a heading line that
    # names the run in full (a long path there wraps in the terminal, but is never cut)
    tables = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert len(tables) > 10 and max(len(line) for line in tables) <= 80
    assert sum(f"test accuracy, n=300: {r}" in out for r in two_runs) == 2
    code, js, err = cli(capsys, "eval", *two_runs, "--n", "300", "--by", "a_digits", "--format", "json")
    for name in NAMES:
        assert whole(name, out), name
    for fig in _figures(json.loads(js)):
        assert whole(fig, out), fig


def test_a_wide_terminal_shows_runs_side_by_side(two_runs, capsys, monkeypatch):
    monkeypatch.setattr(console, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = cli(capsys, "eval", *two_runs, "--n", "100")
    assert code == 0, err
    row = [line for line in out.splitlines() if re.search(r"\ball\b", line)]
    assert len(row) == 1 and len(re.findall(r"\d+\.\d\d%–\d+\.\d\d%", row[0])) == 2


# ---- --format json -------------------------------------------------------------------------------

def test_list_tasks_and_presets_json(capsys):
    import tasks as registry

    catalog.list_tasks([], "json")
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(registry.available())
    add = next(r for r in rows if r["name"] == "addition")
    assert add["options"]["max_digits"] == 3 and "test" in add["splits"] and add["origin"] == "built-in"
    catalog.list_presets("json")
    presets = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in presets] == [p.name for p in PRESETS.values() if not p.archived]
    calc = next(p for p in presets if p["name"] == "calculator")
    assert calc["tasks"] == ["calculator"] and calc["model"]["n_layer"] == 3 and calc["train"]["steps"] > 0
    assert {"description", "task", "target_acc"} <= calc.keys()


def test_list_presets_table_is_the_old_text(capsys):
    catalog.list_presets()
    lines = capsys.readouterr().out.splitlines()
    p = PRESETS["addition"]
    i = lines.index(f"{p.name:12s} {p.description}")
    assert lines[i + 1] == (f"{'':12s} model {p.model.n_layer}L {p.model.n_head}H {p.model.n_embd}d block "
                            f"{p.model.block_size}; {p.train.steps} steps x batch {p.train.batch_size}, "
                            f"lr {p.train.lr}; for addition")
    assert len(lines) == 2 * len(CURRENT)


def test_presets_kept_only_for_old_figures_are_listed_with_all_and_still_train(tmp_path, capsys):
    """Issue 41: five of twenty presets existed only so that old figures reproduce."""
    old = [p.name for p in PRESETS.values() if p.archived]
    assert set(old) == {"calc-weighted", "calc-mixed", "calc-steps", "calc-v1", "mul-lengthgen-reversed"}
    code, out, _ = cli(capsys, "presets")
    assert code == 0 and not any(line.split()[0] in old for line in out.splitlines() if line[:1].strip())
    code, out, _ = cli(capsys, "presets", "--all", "--format", "json")
    assert [r["name"] for r in json.loads(out)] == list(PRESETS)
    for name in old:  # what it is for, not what it was
        assert "reproduces docs/LOG.md" in PRESETS[name].description and "kept so" not in PRESETS[name].description
    code, _, err = cli(capsys, "train", "--task", "calculator", "--preset", "calc-v1", "--steps", "1",
                       "--set", "model.n_layer=1", "--out", tmp_path / "run", "-q", "--device", "cpu")
    assert code == 0, err  # still reproducible by name


@pytest.mark.parametrize("fn", [lambda f: catalog.list_tasks([], f), catalog.list_presets])
def test_list_formats_other_than_table_and_json_are_user_errors(fn):
    with pytest.raises(UserError, match="table or json"):
        fn("yaml")


def test_cli_tasks_and_presets_format_json():
    p = piped("tasks", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert "addition" in {r["name"] for r in json.loads(p.stdout)}
    p = piped("presets", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert [r["name"] for r in json.loads(p.stdout)] == list(CURRENT)
    p = piped("presets", "--format", "xml")
    assert p.returncode == 2 and "table or json" in one_error_line(p.stderr)


# ---- progress lines ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.t, self.reads = 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.t


def test_progress_lines_between_evals(capsys):
    clock = FakeClock()
    prog = TrainProgress(100, mode="lines", interval=10.0, clock=clock)
    for step in range(1, 101):
        clock.t += 1.0  # one second a step: a line every 10 steps, and one at each eval
        rec = {"step": step, "loss": 1.0 / step, "lr": 1e-3, "tokens_per_s": 5000.0}
        if step % 50 == 0:
            rec.update(val_loss=2.0, val_acc=0.5)
        reads = clock.reads
        prog.update(step, rec)
        assert clock.reads - reads <= 1  # a clock read and a comparison per step, no more
    lines = capsys.readouterr().err.splitlines()
    steps = [int(re.match(r"step (\d+)/100 ", line)[1]) for line in lines]
    assert steps == list(range(10, 101, 10))
    assert "loss 0.1000" in lines[0] and "5.0k tok/s" in lines[0] and "ETA 1m30s" in lines[0]
    assert "val_acc 50.00%" in lines[4]  # step 50 is an eval


def test_progress_of_a_run_with_a_target_bounds_its_time_and_names_the_target(tmp_path, capsys):
    """Issue 41: the quickstart run showed "ETA 25m" and stopped at its target after a third of its
    steps.  With a target, the time left to the last step is a bound, and the line says where the
    run stops."""
    clock = FakeClock()
    prog = TrainProgress(100, mode="lines", interval=10.0, clock=clock, stop_at="val_acc ≥ 1")
    for step in range(1, 11):
        clock.t += 1.0
        prog.update(step, {"step": step, "loss": 0.5})
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("step 10/100 ") and "at most 1m30s more: stops at val_acc ≥ 1" in line
    assert "ETA" not in line
    code, _, err = cli(capsys, "train", "--task", "addition", "--steps", "3", "--set", "model.n_layer=1",
                       "--set", "model.n_embd=32", "--set", "train.eval_interval=2",
                       "--target-acc", "0.99", "--out", tmp_path / "run", "--device", "cpu")
    assert code == 0, err
    assert "stops at val_acc ≥ 0.99" in err  # the CLI passes the run's target


def test_progress_with_a_tiny_interval_prints_steps_between_evals(capsys):
    prog = TrainProgress(30, start=10, mode="lines", interval=1e-9)
    for step in range(11, 31):
        prog.update(step, {"step": step, "loss": 0.5} if step % 5 == 0 else {"step": step})
    lines = capsys.readouterr().err.splitlines()
    # no evals at all, yet (nearly: the clock may not tick between two steps) every step has a line
    assert len(lines) >= 15 and all(re.match(r"step \d+/30 ", line) for line in lines)
    assert "ETA" in lines[0] and any("loss 0.5000" in line for line in lines)


def test_progress_defaults():
    import time

    prog = TrainProgress(10, mode="quiet")
    assert prog.interval == 30.0 and prog._clock is time.monotonic
    with pytest.raises(ValueError):
        TrainProgress(10, mode="lines", interval=0)


# ---- eval output files ---------------------------------------------------------------------------

def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith((".tmp", ".probe"))]


def test_eval_writes_out_samples_and_plot(two_runs, tmp_path, capsys):
    code, _, err = cli(capsys, "eval", two_runs[0], "--n", "50", "--by", "a_digits,b_digits",
                       "--out", tmp_path / "t.md", "--samples", tmp_path / "s.jsonl", "--plot", tmp_path / "h.png")
    assert code == 0, err
    assert (tmp_path / "t.md").read_text().startswith("| run |")
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 50
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    # one bucket column: accuracy against it, a line per run
    code, _, err = cli(capsys, "eval", *two_runs, "--n", "50", "--by", "a_digits", "--plot", tmp_path / "line.png")
    assert code == 0, err
    assert (tmp_path / "line.png").read_bytes()[:4] == b"\x89PNG"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert _no_temp_files(tmp_path)


def test_unwritable_eval_outputs_fail_before_evaluating(two_runs, tmp_path, capsys, monkeypatch):
    import experiments.eval_runs

    def never(*a, **k):
        raise AssertionError("evaluated before checking the output paths")

    monkeypatch.setattr(experiments.eval_runs, "evaluate", never)
    (tmp_path / "adir").mkdir()
    cases = {
        "--out in a missing folder": ["--out", tmp_path / "nope" / "t.md"],
        "--out is a directory": ["--out", tmp_path / "adir"],
        "--samples in a missing folder": ["--samples", tmp_path / "nope" / "s.jsonl"],
        "--samples is a directory": ["--samples", tmp_path / "adir"],
        "--plot is a directory": ["--plot", tmp_path / "adir"],
        "--plot with three bucket columns": ["--plot", tmp_path / "h.png", "--by", "a_digits,b_digits,carries"],
    }
    for name, extra in cases.items():
        code, _, err = cli(capsys, "eval", two_runs[0], "--n", "20", *extra)
        assert code == 2, f"{name}: exit {code}, {err!r}"
        one_error_line(err)
    # with two runs the samples go to s.0.jsonl and s.1.jsonl: the second is checked up front too
    (tmp_path / "s.1.jsonl").mkdir()
    code, _, err = cli(capsys, "eval", *two_runs, "--samples", tmp_path / "s.jsonl")
    assert code == 2 and "s.1.jsonl" in one_error_line(err)
    assert not (tmp_path / "s.0.jsonl").exists()
    assert _no_temp_files(tmp_path)


def test_permission_denied_is_a_user_error(two_runs, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root writes anyway: deny it the way the OS would
        real = outputs.tempfile.mkstemp

        def denied(*a, dir=None, **k):
            if Path(dir) == ro:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(outputs.tempfile, "mkstemp", denied)
    try:
        code, _, err = cli(capsys, "eval", two_runs[0], "--n", "20", "--out", ro / "t.md")
        assert code == 2 and "--out" in one_error_line(err) and "Permission denied" in err
    finally:
        ro.chmod(0o700)


def test_unwritable_out_exits_2_with_one_line_as_a_subprocess(two_runs, tmp_path):
    p = piped("eval", two_runs[0], "--n", "20", "--out", tmp_path / "missing" / "t.md")
    assert p.returncode == 2 and "does not exist" in one_error_line(p.stderr)
    assert p.stdout == ""  # refused before the evaluation, not after printing it


def test_a_failing_write_leaves_the_old_out_file_whole(two_runs, tmp_path, capsys, monkeypatch):
    out, samples = tmp_path / "t.md", tmp_path / "s.jsonl"
    out.write_text("old table\n")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    code, _, err = cli(capsys, "eval", two_runs[0], "--n", "30", "--out", out, "--format", "csv")
    assert code == 2 and "No space left" in one_error_line(err)
    assert out.read_text() == "old table\n"
    code, _, err = cli(capsys, "eval", two_runs[0], "--n", "30", "--samples", samples)
    assert code == 2 and "--samples" in one_error_line(err)
    assert not samples.exists()
    assert _no_temp_files(tmp_path)


def test_samples_interrupted_mid_stream_leave_no_file(two_runs, tmp_path):
    """Samples stream into a temporary file; an evaluation that dies half-way leaves nothing that
    could pass for a complete sample set."""
    from experiments import load_run
    from experiments.evaluate import evaluate

    run = load_run(two_runs[0], device="cpu")
    task = run.task
    real = task.eval_problems

    def dies_after_one_chunk(seed, split, n):
        yield from real(seed, split, 20, chunk=10)  # two chunks, written to the temporary file
        raise OSError(errno.EIO, "Input/output error")

    task.eval_problems = dies_after_one_chunk
    samples = tmp_path / "s.jsonl"
    with pytest.raises(OSError):
        evaluate(run.model, task, n=40, samples=samples)
    assert not samples.exists() and _no_temp_files(tmp_path)
    task.eval_problems = real
    t = evaluate(run.model, task, n=40, samples=samples)
    assert int(t["n"].iloc[-1]) == 40 and len(samples.read_text().splitlines()) == 40
    assert np.isfinite(t["accuracy"]).all()


def test_outputs_follow_symlinks_and_leave_devices_alone(two_runs, tmp_path, capsys):
    from experiments.outputs import output_target

    # os.replace over /dev/null (as root) would put a regular file there: devices are written in place
    assert output_target(Path(os.devnull)) == (Path(os.devnull), False)
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("old\n")
    link.symlink_to(real)
    assert output_target(link) == (real, True)
    code, _, err = cli(capsys, "eval", two_runs[0], "--n", "10", "--format", "csv", "--out", link)
    assert code == 0, err
    assert link.is_symlink() and real.read_text().startswith("run,")


def test_eval_tables_carry_the_baseline_of_the_most_common_answer(two_runs, tmp_path, capsys):
    """Issue 41: 79.5% looked like learning until pandas showed that always answering "1" got 60.6%.
    Each row's baseline is the accuracy of always giving the set's most common answer, here checked
    against the scored problems themselves (--samples), with pandas."""
    code, out, err = cli(capsys, "eval", two_runs[0], "--n", "300", "--by", "a_digits", "--format", "json",
                         "--samples", tmp_path / "s.jsonl", "--device", "cpu")
    assert code == 0, err
    rows = json.loads(out)
    scored = pd.read_json(tmp_path / "s.jsonl", lines=True, dtype={"expected": str})
    counts = scored["expected"].value_counts()
    common = next(e for e in scored["expected"] if counts[e] == counts.max())  # ties: the first one seen
    for row in rows:
        part = scored if row["a_digits"] == "all" else scored[scored["a_digits"] == int(row["a_digits"])]
        assert row["baseline"] == pytest.approx((part["expected"] == common).mean()), row
    assert 0 < rows[-1]["baseline"] < 1  # addition's answers repeat, but no answer is every answer
    code, out, err = cli(capsys, "eval", two_runs[0], "--n", "300", "--device", "cpu")
    assert code == 0 and "baseline" in out, out  # the printed table has the column too


def test_a_long_eval_says_how_far_it_is_after_each_chunk(two_runs, capsys):
    """More than one chunk of problems (10,000): a line on stderr after each, the last without a time left."""
    code, _, err = cli(capsys, "eval", two_runs[0], "--n", "10001")
    assert code == 0
    lines = [x for x in err.splitlines() if "scored" in x]
    assert len(lines) == 2
    assert re.fullmatch(rf"{re.escape(str(two_runs[0]))}: scored 10,000 of 10,001 \(\d+s, about \d+s more\)", lines[0])
    assert re.fullmatch(rf"{re.escape(str(two_runs[0]))}: scored 10,001 of 10,001 \(\d+s\)", lines[1])
    code, _, err = cli(capsys, "eval", two_runs[0], "--n", "300")
    assert code == 0 and "scored" not in err  # one chunk: no progress to tell
