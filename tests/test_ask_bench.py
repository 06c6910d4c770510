"""`workbench ask` and `workbench bench`, and the calculator's bad inputs, through the CLI."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.ask import Answer, format_answer
from helpers import TINY, cli


@pytest.fixture(scope="module")
def calc_run(tmp_path_factory):
    from experiments.cli import main

    out = tmp_path_factory.mktemp("runs") / "calc"
    code = main(["train", "--task", "calculator", "--preset", "calc-steps", *TINY, "--set", "model.block_size=64", "--steps", "4",
                 "--set", "train.eval_interval=4", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    return out


def test_ask_prints_completion_answers_and_trace_check(calc_run, capsys):
    code, out, err = cli(capsys, "ask", calc_run, "12+7*3-5", "3*4=")
    assert code == 0, err
    assert "prompt      12+7*3-5=" in out and "prompt      3*4=" in out
    assert "expected    28" in out and "expected    12" in out
    # an untrained model is wrong, and the checker says which step
    assert "WRONG" in out and "step 1" in out


def test_ask_format_of_a_correct_trace():
    text = format_answer(Answer("12+7*3-5=", "21+12-5=33-5=82", 28, 28, True, [], has_trace=True))
    assert "correct" in text and "every step checks out" in text


@pytest.mark.parametrize("prompt", ["12+7*", "1+(2", "12+x", "5/0", "8/(3-3)"])
def test_ask_bad_expressions(calc_run, capsys, prompt):
    code, out, err = cli(capsys, "ask", calc_run, prompt)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("sets", [["task.ops="], ["task.min_ops=3", "task.max_ops=2"], ["task.max_digits=0"],
                                  ["task.ops=+%"], ["task.cot=maybe"]])
def test_calculator_bad_configs(tmp_path, capsys, sets):
    args = ["train", "--task", "calculator", "--steps", "1", "--out", tmp_path / "r"]
    for s in sets:
        args += ["--set", s]
    code, out, err = cli(capsys, *args)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_ask_works_for_addition_and_text(tmp_path, capsys, shakespeare):
    from experiments.cli import main

    add = tmp_path / "add"
    assert main(["train", "--task", "addition", *TINY, "--steps", "2", "--out", str(add), "-q"]) == 0
    code, out, err = cli(capsys, "ask", add, "12+34")
    assert code == 0 and "expected    46" in out, err
    code, out, err = cli(capsys, "ask", add, "12-34")
    assert code == 2
    text = tmp_path / "text"
    assert main(["train", "--task", "shakespeare", *TINY, "--steps", "2", "--out", str(text), "-q"]) == 0
    code, out, err = cli(capsys, "ask", text, "ROMEO:", "-n", "10")
    assert code == 0 and "completion" in out, err


def test_bench_reports_and_writes_json(tmp_path, capsys, calc_run):
    code, out, err = cli(capsys, "bench", "--task", "calculator", "--preset", "calc-steps", *TINY, "--set", "model.block_size=64",
                         "--steps", "3", "--warmup", "1", "--decode-n", "20", "--run", calc_run,
                         "--json", tmp_path / "b.json", "--device", "cpu")
    assert code == 0, err
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["ms_per_step"] > 0 and 0 < r["mfu"] < 1 and 0 < r["data_share"] < 1
    assert r["decode_problems_per_s_cache"] > 0 and r["decode_problems_per_s_no_cache"] > 0
    assert "MFU" in out and "decode" in out


def test_bench_bad_input(capsys):
    code, out, err = cli(capsys, "bench", "--task", "nope")
    assert code == 2 and "unknown task" in err


CPU_STEP = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_step.py"


def test_cpu_step_times_the_preset_step_and_counts_the_chunks_padding():
    # a small model on the default calculator preset's batches: 8 length chunks of 8 rows
    small = ["--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "model.n_head=2",
             "--set", "train.pack=false", "--set", "train.length_chunks=8"]  # the preset packs
    out = subprocess.run([sys.executable, str(CPU_STEP), "--task", "calculator", *small],
                         capture_output=True, text=True, cwd=CPU_STEP.parents[1], timeout=600)
    assert out.returncode == 0, out.stderr
    m = re.search(r"tokens a step: ([\d,]+) real, ([\d,]+) computed in 8 chunk\(s\) \(([\d.]+)x\)", out.stdout)
    assert m, out.stdout
    real, computed = (int(g.replace(",", "")) for g in m.groups()[:2])
    assert 0 < real < computed  # rows of different lengths: the chunks still pad some
    assert "ms/step over 30" in out.stdout


def test_cpu_step_bad_preset_is_one_line_and_exit_2():
    out = subprocess.run([sys.executable, str(CPU_STEP), "--preset", "nope"], capture_output=True, text=True,
                         cwd=CPU_STEP.parents[1], timeout=300)
    assert out.returncode == 2 and "unknown preset 'nope'" in out.stderr and "Traceback" not in out.stderr
