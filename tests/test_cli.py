import json
import shutil
import subprocess
import sys

import pytest

from experiments import load_run
from experiments.build import build
from experiments.presets import PRESETS
from experiments.runspec import resolve_spec
from gpt.model import GPT
from helpers import ROOT, TINY, cli, metrics


@pytest.fixture(scope="module")
def add_run(addition_run):
    """A small addition run trained for 150 steps (not to convergence): conftest's, shared with tests/test_lens.py."""
    return addition_run


def test_train_shakespeare_end_to_end(tmp_path, capsys, shakespeare):
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", "--task", "shakespeare", *TINY, "--steps", "20",
                            "--set", "train.eval_interval=10", "--out", out, "--device", "cpu")
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task"]["name"] == "shakespeare" and cfg["model"]["n_layer"] == 1 and cfg["seed"] == 1337
    assert {"torch", "git", "device", "train"} <= cfg.keys()
    assert (out / "ckpt.pt").exists() and (out / "best.pt").exists() and not (out / ".lock").exists()
    recs = metrics(out, drop_timing=False)
    assert recs[-1]["step"] == 20 and "val_loss" in recs[-1] and "tokens_per_s" in recs[1]
    code, stdout, err = cli(capsys, "sample", out, "--tokens", "30", "--prompt", "ROMEO:")
    assert code == 0, err
    assert stdout.startswith("ROMEO:") and len(stdout) >= 36


def test_addition_eval_api_and_batch_size_independence(add_run, capsys):
    run = load_run(add_run, device="cpu")
    got = run.complete([run.task.prompt(123, 45), run.task.prompt(1, 2)])
    assert len(got) == 2 and all(isinstance(g, str) for g in got)
    tables = []
    for bs in ("7", "1024"):
        code, out, err = cli(capsys, "eval", add_run, "--n", "600", "--format", "json", "--batch-size", bs)
        assert code == 0, err
        tables.append(json.loads(out))
    assert tables[0] == tables[1]
    overall = tables[0][-1]
    buckets = tables[0][:-1]
    assert overall["a_digits"] == "all" and overall["n"] == 600 == sum(r["n"] for r in buckets)
    assert overall["correct"] == sum(r["correct"] for r in buckets)  # the overall row is the buckets' sum
    assert overall["accuracy"] == overall["correct"] / overall["n"]
    assert overall["ci_low"] <= overall["accuracy"] <= overall["ci_high"]


def test_eval_samples_plot_and_markdown(add_run, tmp_path, capsys):
    code, out, err = cli(capsys, "eval", add_run, add_run, "--n", "200", "--format", "markdown",
                         "--samples", tmp_path / "s.jsonl", "--plot", tmp_path / "h.png", "--out", tmp_path / "t.md")
    assert code == 0, err
    assert out.count("| all | all |") == 2
    rows = [json.loads(line) for line in (tmp_path / "s.0.jsonl").read_text().splitlines()]
    assert len(rows) == 200 and {"prompt", "expected", "got", "correct", "a_digits", "carries"} <= rows[0].keys()
    for r in rows:  # the expected answer is Python's a + b
        a, b = r["prompt"].rstrip("=").split("+")
        assert int(r["expected"]) == int(a) + int(b)
    assert (tmp_path / "h.png").stat().st_size > 1000 and (tmp_path / "t.md").exists()


def test_markdown_eval_of_a_task_without_buckets(tmp_path, capsys):
    out = tmp_path / "mod"
    code, _, err = cli(capsys, "train", "--task", "modular", *TINY, "--steps", "5", "--set", "task.p=7",
                       "--set", "train.eval_interval=5", "--out", out, "--quiet", "--device", "cpu")
    assert code == 0, err
    code, text, err = cli(capsys, "eval", out, "--n", "50", "--format", "markdown")
    assert code == 0, err
    assert "| bucket | n |" in text and "| all | 50 |" in text


def test_show_and_tasks(capsys):
    code, out, _ = cli(capsys, "show", "--task", "addition", "-n", "2")
    assert code == 0 and out.count("target") == 2 and "·" in out
    # show applies the task's default preset, as train does: the grokking preset's symbols
    code, out, _ = cli(capsys, "show", "--task", "modular", "-n", "1")
    assert code == 0 and "(100 tokens)" in out
    code, out, _ = cli(capsys, "show", "--task", "modular", "-n", "1", "--set", "task.tokens=digits")
    assert code == 0 and "(13 tokens)" in out
    assert cli(capsys, "show", "--task", "addition", "-p", "grokking")[0] == 2
    code, out, _ = cli(capsys, "tasks")
    assert code == 0 and "addition" in out and "shakespeare" in out


def _bad_inputs(tmp, run):
    (tmp / "empty.txt").write_text("")
    (tmp / "latin1.txt").write_bytes("café ".encode("latin-1") * 100)
    (tmp / "binary.txt").write_bytes(b"\x00\x01abc" * 100)
    (tmp / "small.txt").write_text("tiny text\n")
    (tmp / "notrun").mkdir(exist_ok=True)
    (tmp / "corrupt").mkdir(exist_ok=True)
    shutil.copy(run / "config.json", tmp / "corrupt" / "config.json")
    (tmp / "corrupt" / "ckpt.pt").write_bytes(b"garbage")
    (tmp / "alien").mkdir(exist_ok=True)
    cfg = json.loads((run / "config.json").read_text())
    cfg["task"]["name"] = "no-such-task"
    (tmp / "alien" / "config.json").write_text(json.dumps(cfg))
    shutil.copy(run / "ckpt.pt", tmp / "alien" / "ckpt.pt")
    t = ["train", "--device", "cpu", "--quiet", "--out", tmp / "new"]
    return {
        "unknown task": [*t, "--task", "adition"],
        "unknown preset": [*t, "--task", "addition", "--preset", "huge"],
        "empty preset": [*t, "--task", "addition", "--preset", ""],
        "unknown set key": [*t, "--task", "addition", "--set", "model.n_layers=2"],
        "bad set section": [*t, "--task", "addition", "--set", "optim.lr=1"],
        "set without =": [*t, "--task", "addition", "--set", "model.n_layer"],
        "wrong type": [*t, "--task", "addition", "--set", "model.n_layer=two"],
        "bad value": [*t, "--task", "addition", "--set", "model.n_layer=0"],
        "head mismatch": [*t, "--task", "addition", "--set", "model.n_head=3"],
        "digits <= 0": [*t, "--task", "addition", "--set", "task.max_digits=0"],
        "min > max": [*t, "--task", "addition", "--set", "task.min_digits=5"],
        "negative steps": [*t, "--task", "addition", "--steps", "-5"],
        "unknown option": [*t, "--task", "addition", "--stepz", "5"],
        "missing data file": [*t, "--task", "text", "--set", f"task.path={tmp / 'nope.txt'}"],
        "text without path": [*t, "--task", "text"],
        "empty data file": [*t, "--task", "text", "--set", f"task.path={tmp / 'empty.txt'}"],
        "non-utf8 file": [*t, "--task", "text", "--set", f"task.path={tmp / 'latin1.txt'}"],
        "binary file": [*t, "--task", "text", "--set", f"task.path={tmp / 'binary.txt'}"],
        "block larger than data": [*t, "--task", "text", "--set", f"task.path={tmp / 'small.txt'}"],
        "block too small for task": [*t, "--task", "addition", "--set", "model.block_size=4"],
        "resume a non-run": ["train", "--resume", "--out", tmp / "notrun"],
        "resume corrupt checkpoint": ["train", "--resume", "--out", tmp / "corrupt"],
        "resume without out": ["train", "--resume"],
        "out is an existing run": ["train", "--task", "addition", "--out", run, "--quiet"],
        "bad device": [*t, "--task", "addition", "--device", "tpu"],
        "eval not a run": ["eval", tmp / "notrun"],
        "eval missing dir": ["eval", tmp / "missing"],
        "eval n <= 0": ["eval", run, "--n", "0"],
        "eval unknown by": ["eval", run, "--by", "colour"],
        "eval by names no column": ["eval", run, "--by", ","],
        "eval bad split": ["eval", run, "--split", "hard"],
        "eval ood longer than block": ["eval", run, "--split", "ood"],
        "eval bad format": ["eval", run, "--format", "xml"],
        "eval task not installed": ["eval", tmp / "alien"],
        "eval bad task set": ["eval", run, "--set", "task.min_digits=0"],
        "show unknown task": ["show", "--task", "multiply"],
        "show bad n": ["show", "--task", "addition", "-n", "0"],
        "sample not a run": ["sample", tmp / "notrun"],
        "sample bad temperature": ["sample", run, "--temperature", "0"],
        "unknown command": ["trian"],
        "tasks include missing": ["tasks", "--include", tmp / "nope.py"],
        "train include without task": [*t, "--task", "addition", "--include", tmp / "small.txt"],
        **_more_bad_inputs(tmp, run, t),
    }


def _more_bad_inputs(tmp, run, t):
    """Bad values for every command's options, found by reading each command's --help (issue 15)."""
    (tmp / "syntax.py").write_text("def broken(:\n")
    (tmp / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp / "badjson").mkdir(exist_ok=True)
    shutil.copy(run / "ckpt.pt", tmp / "badjson" / "ckpt.pt")
    (tmp / "badjson" / "config.json").write_text("{")
    (tmp / "spec.txt").write_text("name = [unclosed\n")
    (tmp / "adir").mkdir(exist_ok=True)
    a = [*t, "--task", "addition"]
    under_file = tmp / "small.txt" / "x"
    return {
        "negative seed": [*a, "--seed", "-1"],
        "seed over 2**63-1": [*a, "--seed", str(2**63)],
        "huge steps": [*a, "--steps", str(10**30)],
        "zero steps": [*a, "--steps", "0"],
        "fractional steps": [*a, "--steps", "1.5"],
        "nproc 0": [*a, "--nproc", "0"],
        "target-acc above 1": [*a, "--target-acc", "2"],
        "target-acc nan": [*a, "--target-acc", "nan"],
        "out under a file": ["train", "--task", "addition", "--quiet", "--out", under_file],
        "out is a file": ["train", "--task", "addition", "--quiet", "--out", tmp / "small.txt"],
        "include with a syntax error": [*a, "--include", tmp / "syntax.py"],
        "include raising at import": [*a, "--include", tmp / "raises.py"],
        "init-from a missing run": [*a, "--init-from", tmp / "missing"],
        "init-from a corrupt run": [*a, "--init-from", tmp / "corrupt"],
        "non-UTF-8 task name": [*t, "--task", "caf\udce9"],
        "eval batch-size 0": ["eval", run, "--batch-size", "0"],
        "eval huge n": ["eval", run, "--n", str(10**30)],
        "eval negative seed": ["eval", run, "--seed", "-3"],
        "eval --out in a missing folder": ["eval", run, "--n", "5", "--out", tmp / "missing" / "t.md"],
        "eval --samples is a folder": ["eval", run, "--n", "5", "--samples", tmp / "adir"],
        "eval --out under a file": ["eval", run, "--n", "5", "--out", under_file],
        "eval unknown checkpoint": ["eval", run, "--checkpoint", "nope.pt"],
        "eval checkpoint outside the run": ["eval", run, "--checkpoint", "../../etc/passwd"],
        "eval config.json not JSON": ["eval", tmp / "badjson"],
        "sample huge tokens": ["sample", run, "--tokens", str(10**30)],
        "sample temperature nan": ["sample", run, "--temperature", "nan"],
        "sample temperature inf": ["sample", run, "--temperature", "inf"],
        "sample top-k 0": ["sample", run, "--top-k", "0"],
        "ask tokens 0": ["ask", run, "1+2=", "--tokens", "0"],
        "ask not a run": ["ask", tmp / "notrun", "1+2="],
        "check examples 0": ["check", "--task", "addition", "--examples", "0"],
        "check with a model override": ["check", "--task", "addition", "--set", "model.n_layer=2"],
        "new-task uppercase name": ["new-task", "Bad", "--dir", tmp / "nt"],
        "new-task existing task": ["new-task", "addition", "--dir", tmp / "nt"],
        "new-task path as name": ["new-task", "../x", "--dir", tmp / "nt"],
        "new-task dir under a file": ["new-task", "mytask", "--dir", under_file],
        "bench steps 0": ["bench", "--steps", "0"],
        "bench negative warmup": ["bench", "--warmup", "-1"],
        "bench huge decode-n": ["bench", "--decode-n", str(10**30)],
        "tasks bad format": ["tasks", "--format", "xml"],
        "presets bad format": ["presets", "--format", "xml"],
        "run missing spec": ["run", tmp / "nope.toml", "--out", tmp / "specout"],
        "run spec not TOML": ["run", tmp / "spec.txt", "--out", tmp / "specout"],
        "run spec is a folder": ["run", tmp / "adir", "--out", tmp / "specout"],
        "report not a folder": ["report", tmp / "small.txt"],
        "bench --run with --decode-n 0": ["bench", "--run", tmp / "missing", "--decode-n", "0"],
        "run --dry-run into a path under a file": ["run", ROOT / "experiments" / "specs" / "variants.toml",
                                                    "--dry-run", "--out", under_file],
        "run huge jobs": ["run", tmp / "spec.txt", "--jobs", str(2**63)],
        "train_size above the distinct problems": [*a, "--set", "task.max_digits=1", "--set", "task.train_size=500"],
    }


def test_bad_inputs_give_one_line_and_exit_2(add_run, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in add_run.iterdir() if p.is_file()}
    cases = _bad_inputs(tmp_path, add_run)
    assert len(cases) >= 80
    for name, args in cases.items():
        code, out, err = cli(capsys, *args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: {err!r}"
        assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in add_run.iterdir() if p.is_file()}
    assert before == after  # no existing run was touched
    assert not (tmp_path / "new").exists()


def test_typer_cli_runner_end_to_end(tmp_path, shakespeare):
    from typer.testing import CliRunner

    from experiments.cli import app

    runner = CliRunner()
    out = tmp_path / "r"
    res = runner.invoke(app, ["train", "--task", "shakespeare", *TINY, "--steps", "5", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["sample", str(out), "--tokens", "5"])
    assert res.exit_code == 0 and len(res.output) >= 5
    res = runner.invoke(app, ["train", "--task", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown task" in res.output
    assert "--include FILE.py" in res.output  # how a task of one's own is loaded (issue 41)


@pytest.mark.parametrize("preset", [p for p in PRESETS.values() if p.for_tasks and "shakespeare" not in p.for_tasks],
                         ids=lambda p: p.name)
def test_problem_presets_fit_their_tasks(preset):
    # a preset that names its tasks must train on them as shipped: the block holds the longest problem
    from experiments.runspec import resolve_spec as build_spec
    from tasks import get_task_class
    for task in preset.for_tasks:
        spec = build_spec(task, preset.name, [], None, 1337, [])
        assert get_task_class(task)(spec.task_config).max_length() - 1 <= spec.model.block_size


def test_the_tiny_adder_keeps_to_its_parameter_budget():
    # issue 18: add10-tiny is a generic GPT of at most 2,000 unique trainable parameters
    model = GPT(build(resolve_spec("addition", "add10-tiny")).model)
    unique = {id(p): p for p in model.parameters() if p.requires_grad}
    assert sum(p.numel() for p in unique.values()) == 1932


def test_the_help_lists_each_command_by_its_own_summary():
    """`workbench --help` prints COMMANDS' summaries without importing the commands; each is the
    first paragraph of the command's own help, so the two cannot drift."""
    import typer

    from experiments.cli import LazyCommands, app
    from experiments.commands import COMMANDS

    group = typer.main.get_group(app)
    assert isinstance(group, LazyCommands)
    for c in COMMANDS.values():
        command = group.get_command(None, c.name)
        assert command is not None and command.name == c.name
        assert " ".join(command.help.split("\n\n")[0].split()) == c.summary, c.name
    assert group.get_command(None, "nope") is None


@pytest.mark.parametrize("args", [["--help"], ["tasks"], ["presets"], ["presets", "--format", "json"]])
def test_the_light_commands_load_no_torch(args):
    """--help, tasks and presets answer in under a second (docs/benchmarks.md, "CLI start-up"): a fresh process
    running one must not have imported torch, pandas or matplotlib (a real process is the point)."""
    heavy = ("torch", "pandas", "matplotlib")
    code = ("import sys\nfrom experiments.cli import main\ncode = main(sys.argv[1:])\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\nsys.exit(code)\n")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout and p.stderr.strip().splitlines()[-1] == "[]"
    # the check can fail: a command on a run loads torch before it finds there is no run
    p = subprocess.run([sys.executable, "-c", code, "eval", "no-such-run"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert p.returncode == 2 and "'torch'" in p.stderr.strip().splitlines()[-1]
