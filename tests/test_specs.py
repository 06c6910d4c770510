"""Experiment specs: parsing with located errors, and `workbench run` / `report` end to end."""

import json
import textwrap

import pandas as pd
import pytest

from experiments.errors import UserError
from experiments.sweep.grid import plan
from experiments.sweep.results import grid_columns, how_runs, per_seed_table, reproduce_commands
from experiments.sweep.specfile import load_spec
from helpers import ROOT, TINY_SETS, cli


SPEC = textwrap.dedent(f"""
    description = "two answer formats, two seeds, and a variant that cannot work"
    budget_minutes = 2
    seeds = [1, 2]
    jobs = 2

    [base]
    task = "addition"
    preset = "small"
    steps = 20
    target_acc = 0
    set = {{ {TINY_SETS} }}

    [[variant]]
    name = "fmt"
    grid = {{ "task.reverse_answer" = [true, false] }}

    [[variant]]
    name = "broken"
    seeds = [1]
    set = {{ "model.block_size" = 4 }}

    [[eval]]
    name = "test"
    split = "test"
    n = 30
    by = ["a_digits", "b_digits"]

    [[eval]]
    name = "len"
    split = "test"
    n = 20
    by = ["a_digits"]

    [report]
    metrics = ["test.accuracy", "val_loss", "steps", "steps_to:val_acc>=0.99"]
""")


def write(tmp_path, text, name="spec.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_grid_and_cases_expand_in_order(tmp_path):
    spec = load_spec(write(tmp_path, """
        budget_minutes = 1
        [base]
        task = "addition"
        [[variant]]
        name = "a"
        grid = { "task.reverse_answer" = [true, false], "model.n_layer" = [1, 2] }
        [[variant]]
        name = "b"
        cases = [{}, { "model.pos" = "rope" }, { name = "both", "model.pos" = "none", "model.norm" = "rmsnorm" }]
    """))
    names = [v.name for v in spec.variants]
    assert names == ["a.reverse_answer=true.n_layer=1", "a.reverse_answer=true.n_layer=2",
                     "a.reverse_answer=false.n_layer=1", "a.reverse_answer=false.n_layer=2",
                     "b", "b.pos=rope", "b.both"]
    assert dict(spec.variant("b.both").params) == {"model.pos": "none", "model.norm": "rmsnorm"}


@pytest.mark.parametrize("body,where", [
    ('budget_minutes = 1\nbogus = 3\n[base]\ntask = "addition"\n', ":2: bogus: unknown key"),
    ('budget_minutes = 1\n[base]\ntask = "addition"\nstepz = 3\n', ":4: base.stepz: unknown key"),
    ('budget_minutes = 1\n[base]\ntask = "addition"\n[[variant]]\nname = "x"\ninit_from = "nope"\n',
     ":6: variant[0].init_from"),
    ('[base]\ntask = "addition"\n', "budget_minutes: missing"),
    ('budget_minutes = 1\n[base]\ntask = "addition"\n[report]\nmetrics = ["accuracy"]\n', "unknown metric"),
    ('budget_minutes = 1\n[base\n', "not valid TOML"),
    ('budget_minutes = 1\n[base]\ntask = "addition"\n[[variant]]\nname = "../x"\n',
     ":5: variant[0].name: variant name '../x' contains '/'"),
    ('budget_minutes = 1\n[base]\ntask = "addition"\n[[eval]]\nname = "a/b"\n', ":5: eval[0].name: eval name"),
    # a key of another table: where it belongs (issue 41: `include` at the top level)
    ('budget_minutes = 1\ninclude = ["t.py"]\n[base]\ntask = "addition"\n',
     ":2: include: 'include' does not go here; it belongs in [base] or a [[variant]]"),
    ('budget_minutes = 1\n[base]\ntask = "addition"\nseeds = [1]\n', ":4: base.seeds: 'seeds' does not go here; "
     "it belongs in the top level or a [[variant]]"),
    ('budget_minutes = 1\n[base]\ntask = "addition"\n[[eval]]\nsteps = 3\n',
     ":5: eval[0].steps: 'steps' does not go here; it belongs in [base] or a [[variant]]"),
])
def test_bad_specs_name_file_line_and_key(tmp_path, body, where):
    p = write(tmp_path, body)
    with pytest.raises(UserError, match=where.replace("[", r"\[").replace("]", r"\]")) as e:
        load_spec(p)
    assert str(p) in str(e.value)


def test_unknown_task_or_variant_key_exits_2_before_training(tmp_path, capsys):
    p = write(tmp_path, 'budget_minutes = 1\n[base]\ntask = "additon"\n')
    code, _, err = cli(capsys, "run", p, "--out", tmp_path / "o")
    assert code == 2 and "additon" in err and "Traceback" not in err
    p = write(tmp_path, 'budget_minutes = 1\n[base]\ntask = "addition"\nset = { "model.poz" = "rope" }\n')
    code, _, err = cli(capsys, "run", p, "--out", tmp_path / "o")
    assert code == 2 and "model.poz" in err and f"{p}:4" in err
    p = write(tmp_path, 'budget_minutes = 1\n[base]\ntask = "addition"\n\n[[variant]]\nname = "v"\n'
                        'set = { "model.pos" = "alibi" }\n')
    code, _, err = cli(capsys, "run", p, "--out", tmp_path / "o")
    assert code == 2 and "alibi" in err and f"{p}:7" in err and "variant v" in err
    assert not (tmp_path / "o").exists()


def test_report_on_a_directory_without_runs_exits_2(tmp_path, capsys):
    code, _, err = cli(capsys, "report", tmp_path)
    assert code == 2 and "spec.toml" in err


def test_run_resume_report_and_a_failed_variant(tmp_path, capsys):
    # one answer format (CI time): 2 seeds of it, and the broken variant
    spec, out = write(tmp_path, SPEC.replace("[true, false]", "[true]")), tmp_path / "out"
    code, text, err = cli(capsys, "run", spec, "--out", out, "--dry-run")
    assert code == 0 and text.count("[new   ]") == 3 and not out.exists()

    code, text, err = cli(capsys, "run", spec, "--out", out)
    assert code == 0, err
    assert "2 done, 1 failed" in text
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 3
    broken = df[df["variant"] == "broken"].iloc[0]
    assert broken["status"] == "failed" and "block_size" in broken["error"]
    ok = df[df["status"] == "done"]
    assert set(ok["steps"]) == {20} and len(ok) == 2
    # each done run's test.accuracy is its own eval file's 'all' row: correct / n, as scored
    for _, row in ok.iterrows():
        ev = json.loads((out / row["variant"] / f"seed{row['seed']}" / "eval-test.json").read_text())
        assert ev[-1]["a_digits"] == "all" and ev[-1]["n"] == sum(r["n"] for r in ev[:-1])
        assert ev[-1]["accuracy"] == ev[-1]["correct"] / ev[-1]["n"]
        assert row["test.accuracy"] == pytest.approx(ev[-1]["accuracy"])
    md = (out / "results.md").read_text()
    assert "| fmt.reverse_answer=true | 2 |" in md and "## Failed runs" in md and "±" in md
    assert f"Reproduce: `workbench run {spec} --out {out}`" in md  # no --only: the whole spec
    # the broken variant sets no task.reverse_answer, which the grid varies: a gap, not "nan"
    broken_row = next(line for line in md.splitlines() if line.startswith("| broken | 1 |"))
    assert "—" in broken_row and "nan" not in broken_row
    assert (out / "loss.png").is_file() and (out / "heatmap-test.png").is_file()
    assert (out / "by-len.png").read_bytes()[:4] == b"\x89PNG"  # one bucket column: a line per variant

    # a second run trains nothing: done runs are skipped, the failed one is retried
    before = (out / "fmt.reverse_answer=true" / "seed1" / "ckpt.pt").stat().st_mtime_ns
    code, text, _ = cli(capsys, "run", spec, "--out", out)
    assert "(2 already done)" in text and "1 failed" in text
    assert (out / "fmt.reverse_answer=true" / "seed1" / "ckpt.pt").stat().st_mtime_ns == before

    md = (out / "results.md").read_text()
    (out / "results.md").unlink()
    code, text, _ = cli(capsys, "report", out)
    assert code == 0 and (out / "results.md").read_text() == md

    # a run killed after training, before its eval and result were written, is evaluated, not retrained
    run = out / "fmt.reverse_answer=true" / "seed1"
    (run / "result.json").unlink()
    (run / "eval-test.json").unlink()
    code, text, _ = cli(capsys, "run", spec, "--out", out, "--only", "fmt.reverse_answer=true")
    assert code == 0 and "1 done" in text and "(1 already done)" in text
    log = (out / "fmt.reverse_answer=true" / "seed1.log").read_text()
    assert log.count("workbench train") == 1  # trained once; the second pass only evaluated
    assert (run / "eval-test.json").is_file()
    assert (run / "ckpt.pt").stat().st_mtime_ns == before


def test_only_selects_an_exact_name_alone_else_prefix_or_glob() -> None:
    # pos.coupled is a prefix of pos.coupled_rel and pos.coupled_rope: the exact name must win
    spec = load_spec(ROOT / "experiments" / "specs" / "length_generalization.toml")

    def names(only: str) -> list[str]:
        return sorted({k.variant.name for k in plan(spec, only)})

    assert names("pos.coupled") == ["pos.coupled"]
    assert len(plan(spec, "pos.coupled")) == len(spec.seeds)
    assert names("pos.coupled_") == ["pos.coupled_rel", "pos.coupled_rope"]  # a prefix
    assert names("*rope") == ["pos.coupled_rope"]  # a glob
    with pytest.raises(UserError, match="matches no variant"):
        plan(spec, "pos.nope")


def test_the_reproduce_line_repeats_each_only_unless_a_run_had_none(tmp_path) -> None:
    spec = load_spec(ROOT / "experiments" / "specs" / "length_generalization.toml")
    src = spec.path
    one = reproduce_commands(spec, tmp_path, [{"only": "pos.abacus"}, {"only": "pos.abacus"}])
    assert one == f"`workbench run {src} --only pos.abacus --out {tmp_path}`"
    two = reproduce_commands(spec, tmp_path, [{"only": "pos.abacus"}, {"only": "index_hints"}])
    assert two.count("workbench run") == 2 and "--only index_hints" in two
    assert "--only 'pos.couple[d]' --out" in reproduce_commands(spec, tmp_path, [{"only": "pos.couple[d]"}])  # quoted
    # a run without --only covered every variant; older timing files have no "only" key at all
    assert "--only" not in reproduce_commands(spec, tmp_path, [{"only": "pos.abacus"}, {"jobs": 2}])
    assert "--only" not in reproduce_commands(spec, tmp_path, [])


def test_the_report_says_how_every_invocation_ran_not_only_the_last() -> None:
    spec = load_spec(ROOT / "experiments" / "specs" / "length_generalization.toml")
    three = {"how": "3 at a time"}
    assert how_runs(spec, [three, three]) == "3 at a time"
    assert how_runs(spec, [three, {"jobs": 1}, three]) == "3 at a time ×2; 1 at a time ×1"
    assert how_runs(spec, []) == f"{spec.jobs} at a time"


def test_report_columns_show_a_variants_set_beside_the_cases_values(tmp_path) -> None:
    # a variant that fixes model.pos in `set` shows it in the model.pos column the cases vary;
    # a variant that leaves it to the preset shows a gap, not another variant's value
    spec = load_spec(write(tmp_path, """
        budget_minutes = 1
        [base]
        task = "addition"
        [[variant]]
        name = "pos"
        cases = [{ "model.pos" = "rope" }, { "model.pos" = "none", "model.norm" = "rmsnorm" }]
        [[variant]]
        name = "hints"
        set = { "model.pos" = "learned", "task.index_hints" = true }
        [[variant]]
        name = "plain"
    """))
    assert grid_columns(spec) == {
        "pos.pos=rope": {"model.pos": "rope"},
        "pos.pos=none.norm=rmsnorm": {"model.pos": "none", "model.norm": "rmsnorm"},
        "hints": {"model.pos": "learned"},
        "plain": {},
    }
    # the base's set fills a column too, and a case's value wins over the variant's own set
    spec = load_spec(write(tmp_path, """
        budget_minutes = 1
        [base]
        task = "addition"
        set = { "model.pos" = "none" }
        [[variant]]
        name = "v"
        set = { "model.pos" = "learned" }
        cases = [{ "model.pos" = "rope" }]
        [[variant]]
        name = "base"
    """))
    assert grid_columns(spec) == {"v.pos=rope": {"model.pos": "rope"}, "base": {"model.pos": "none"}}


def test_per_seed_rows_show_every_rate_as_a_percentage() -> None:
    # n2.trace_valid is not among the spec's metrics, and used to print as 0.9762
    df = pd.DataFrame([{"variant": "v", "seed": 1, "n2.accuracy": 0.9794, "n2.trace_valid": 0.9762, "steps": 6000.0,
                        "wall_s": 1638.3, "model.pos": float("nan"), "error": ""}])
    row = per_seed_table(df, ["n2.accuracy"]).splitlines()[-1]
    assert row == "| v | 1 | 97.94% | 97.62% | 6000.0 | 1638.3 | — |", row

