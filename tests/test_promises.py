"""Promises the README makes that no other test checks.

- `--target-acc` stops a run early, says so, and a resumed run keeps the rule;
- `workbench eval`'s accuracy and bucket counts agree with an independent reference
  recomputed from its own `--samples` file;
- the Wilson intervals agree with published values;
- a checkpoint made for another task or vocabulary is refused, not silently used.
"""

import json
import math
import shutil
from decimal import Decimal, getcontext
from pathlib import Path

import pytest

from experiments.evaluate import wilson
from gpt.checkpoint import load_checkpoint
from helpers import TINY, cli, killed, metrics, forked_run

# ---- (a) --target-acc -----------------------------------------------------------------------

LIMIT = 80
TARGET = 0.2


def target_args(out, *extra):
    # 1-digit addition at a high learning rate: a tiny model gets a fifth of the held-out
    # problems right within a few dozen steps, far short of the step limit
    return ["train", "--task", "addition", "--preset", "small", *TINY, "--set", "train.batch_size=32",
            "--set", "task.max_digits=1", "--set", "train.lr=1e-2", "--set", "train.warmup_steps=5",
            "--set", "train.eval_interval=5", "--steps", LIMIT, "--target-acc", TARGET, "--out", out,
            "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def target_run(tmp_path_factory):
    import contextlib
    import io

    from experiments.cli import main

    out = tmp_path_factory.mktemp("target") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        assert main([str(a) for a in target_args(out)]) == 0
    return out, stdout.getvalue()


def test_target_acc_stops_the_run_early_and_says_why(target_run):
    run, stdout = target_run
    recs = metrics(run)
    evals = [r for r in recs if "val_acc" in r]
    last = recs[-1]
    assert last is evals[-1] and last["step"] < LIMIT  # stopped at an eval, before the limit ...
    assert last["val_acc"] >= TARGET and all(r["val_acc"] < TARGET for r in evals[:-1])  # ... the first good one
    assert last["stop"] == "target" and sum("stop" in r for r in recs) == 1  # ... and recorded why
    assert f"at step {last['step']} (val_acc reached the target {TARGET:g})" in stdout
    assert json.loads((run / "config.json").read_text())["target_acc"] == TARGET
    assert load_checkpoint(run / "ckpt.pt")["step"] == last["step"]


def test_a_resumed_run_keeps_the_target_rule(target_run, tmp_path, capsys):
    run, _ = target_run
    reference = metrics(run)
    stop = reference[-1]["step"]
    other = tmp_path / "run"
    p = forked_run(*target_args(other, "--quiet"), fault=f"kill:step={stop - 2}")  # just before the stop
    assert killed(p), p.stderr[-2000:]
    assert metrics(other)[-1]["step"] == stop - 3
    code, _, err = cli(capsys, "train", "--resume", "--out", other, "--quiet", "--device", "cpu")
    assert code == 0, err
    assert metrics(other) == reference  # stops at the same step, with the same record
    # resumed once more, with a larger step limit, it has still reached its target: no step more
    code, _, err = cli(capsys, "train", "--resume", "--out", other, "--steps", LIMIT + 20, "--quiet")
    assert code == 0, err
    assert metrics(other) == reference
    # unless the rule is lifted (--target-acc 0: never stop early)
    code, _, err = cli(capsys, "train", "--resume", "--out", other, "--steps", stop + 5, "--target-acc", "0",
                       "--quiet")
    assert code == 0, err
    assert metrics(other)[-1]["step"] == stop + 5 and metrics(other)[-1]["stop"] == "steps"


def test_the_quickstart_run_stops_at_1000_held_out_right(tmp_path, capsys):
    """`workbench train --task addition` (the quickstart) records the preset's rule: stop at
    val_acc 1.0, scored on 1000 held-out problems; --target-acc 0 means never stop early."""
    from experiments.training import TrainOptions

    assert TrainOptions(out=tmp_path).eval_n == 1000
    code, _, err = cli(capsys, "train", "--task", "addition", "--steps", "1", "--out", tmp_path / "a", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "a" / "config.json").read_text())["target_acc"] == 1.0
    assert all(round(r["val_acc"] * 1000, 6).is_integer() for r in metrics(tmp_path / "a") if "val_acc" in r)


# ---- (b) eval against an independent reference ----------------------------------------------

def reference_scores(samples: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(a_digits, b_digits) -> (n, correct), from the prompts and completions alone.

    The format (tasks/addition.py, small preset): prompt "a+b=" with plain decimal operands,
    answer digits least-significant first; a completion is right when it is decimal digits
    whose reversal is a + b."""
    counts: dict[tuple[str, str], list[int]] = {}
    for line in samples.read_text().splitlines():
        rec = json.loads(line)
        prompt, got = rec["prompt"], rec["got"]
        assert prompt.endswith("=") and prompt.count("+") == 1
        a_text, b_text = prompt[:-1].split("+")
        a, b = int(a_text), int(b_text)
        right = got.isascii() and got.isdigit() and int(got[::-1]) == a + b
        for key in [(str(len(str(a))), str(len(str(b)))), ("all", "all")]:
            c = counts.setdefault(key, [0, 0])
            c[0] += 1
            c[1] += right
    return {k: (n, k_) for k, (n, k_) in counts.items()}


def test_eval_accuracy_and_bucket_counts_match_an_independent_reference(target_run, tmp_path, capsys):
    run, _ = target_run
    samples = tmp_path / "samples.jsonl"
    # evaluated on up to 2-digit operands: four buckets, some right, some wrong
    code, out, err = cli(capsys, "eval", run, "--n", "400", "--set", "task.max_digits=2", "--by", "a_digits,b_digits",
                         "--samples", samples, "--format", "json", "--device", "cpu")
    assert code == 0, err
    table = json.loads(out)
    want = reference_scores(samples)
    assert sum(1 for _ in samples.open()) == 400 and want[("all", "all")][0] == 400
    assert 0 < want[("all", "all")][1] < 400  # a mix of right and wrong answers, or the test proves little
    got = {(r["a_digits"], r["b_digits"]): r for r in table}
    assert set(got) == set(want) == {("1", "1"), ("1", "2"), ("2", "1"), ("2", "2"), ("all", "all")}
    for key, (n, k) in want.items():
        row = got[key]
        assert (row["n"], row["correct"]) == (n, k), key
        assert row["accuracy"] == pytest.approx(k / n, abs=1e-12)
        lo, hi = wilson_reference(k, n)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


# ---- (c) Wilson intervals -------------------------------------------------------------------

def wilson_reference(k: int, n: int, z: str = "1.96") -> tuple[float, float]:
    """The Wilson score interval as the roots of its defining quadratic in p,
    (1 + z^2/n) p^2 - (2 k/n + z^2/n) p + (k/n)^2 = 0, in 50-digit decimal arithmetic:
    another route than experiments.evaluate.wilson's centre +- half-width."""
    getcontext().prec = 50
    zz, kk, nn = Decimal(z) ** 2, Decimal(k), Decimal(n)
    p = kk / nn
    a, b, c = 1 + zz / nn, -(2 * p + zz / nn), p * p
    d = (b * b - 4 * a * c).sqrt()
    return float((-b - d) / (2 * a)), float((-b + d) / (2 * a))


# Newcombe R. G. (1998), "Two-sided confidence intervals for the single proportion:
# comparison of seven methods", Statistics in Medicine 17:857-872, Table II, method 3
# (Wilson score, no continuity correction), 95%, to 4 decimals; the 0/10, 10/10, 5/10 rows
# are the closed form's own (0 and 1 exactly; z^2/(n + z^2) = 0.2775 for 0/10), checked
# against wilson_reference above.
PUBLISHED = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (0, 10, 0.0000, 0.2775),
    (10, 10, 0.7225, 1.0000),
    (5, 10, 0.2366, 0.7634),
]


@pytest.mark.parametrize("k,n,lo,hi", PUBLISHED)
def test_wilson_matches_published_values(k, n, lo, hi):
    got = wilson(k, n)
    assert got == (pytest.approx(lo, abs=5e-5), pytest.approx(hi, abs=5e-5))
    ref = wilson_reference(k, n)
    assert got == (pytest.approx(ref[0], abs=1e-12), pytest.approx(ref[1], abs=1e-12))
    assert 0.0 <= got[0] <= k / n <= got[1] <= 1.0


def test_wilson_edge_cases():
    assert all(math.isnan(x) for x in wilson(0, 0))
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    lo, hi = wilson(5, 10)
    assert lo + hi == pytest.approx(1.0)  # symmetric about 1/2


# ---- (d) checkpoints of another task or vocabulary --------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from experiments.cli import main

    root = tmp_path_factory.mktemp("tasks")
    for task in ("addition", "multiplication", "copy", "reverse", "modular"):
        assert main(["train", "--task", task, "--preset", "small", *TINY, "--steps", "1", "--target-acc", "0",
                     "--out", str(root / task), "--quiet", "--device", "cpu"]) == 0
    return root


def swap_checkpoint(runs: Path, source: str, target: str, tmp_path: Path) -> Path:
    run = tmp_path / target
    shutil.copytree(runs / target, run)
    shutil.copyfile(runs / source / "ckpt.pt", run / "ckpt.pt")
    return run


@pytest.mark.parametrize("source,target,says", [
    ("addition", "multiplication", "task 'addition' vs 'multiplication'"),  # other shapes too
    ("copy", "reverse", "task 'copy' vs 'reverse'"),  # same vocabulary and shapes: loads without the check
    ("addition", "modular", "vocabulary '0123456789+=$' vs '0123456789=/$'"),  # same vocabulary size
])
def test_a_checkpoint_of_another_task_is_refused(runs, tmp_path, capsys, source, target, says):
    run = swap_checkpoint(runs, source, target, tmp_path)
    for args in [("eval", run, "--n", "10"), ("ask", run, "x"), ("train", "--resume", "--out", run, "--quiet")]:
        code, _, err = cli(capsys, *args)
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert "does not match this run's config" in err and says in err, err


def test_a_config_whose_vocabulary_changed_is_refused(runs, tmp_path, capsys):
    run = tmp_path / "addition"
    shutil.copytree(runs / "addition", run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["task"]["config"]["delimiters"] = True  # the task now renders "[12]+[7]=" with two more tokens
    (run / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli(capsys, "eval", run, "--n", "10")
    assert code == 2 and err.count("\n") == 1 and "different vocabulary" in err, err
    cfg["task"]["vocab"] = "0123456789+=[]$"  # and config.json agrees with itself: the checkpoint does not
    (run / "config.json").write_text(json.dumps(cfg))
    for args in [("eval", run, "--n", "10"), ("train", "--resume", "--out", run, "--quiet")]:
        code, _, err = cli(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "vocabulary" in err and "Traceback" not in err, (args, err)
