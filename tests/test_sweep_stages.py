"""A sweep spec's stages, each alone (parse, check, expand), and how a run's settings reach its
`workbench train`: as a resolved RunSpec record (--run-spec), never as --set strings parsed again."""

import itertools
import json
import textwrap
from pathlib import Path

import pytest

import experiments.commands.train as train_command
from experiments.cli import main
from experiments.errors import UserError
from experiments.rundir import write_config
from experiments.runspec import coerce, convert, read_run_spec_file, resolve_run, spec_to_dict, to_record
from experiments.sweep.grid import plan
from experiments.sweep.runjob import init_dir, run_spec_file, start_args, train_args
from experiments.sweep.speccheck import Case, CheckedSpec, VariantTable, check_spec, count_runs
from experiments.sweep.specexpand import expand_spec
from experiments.sweep.specfile import load_spec, resolve_variant
from experiments.sweep.specparse import MAX_SPEC_BYTES, SpecSource, parse_spec
from experiments.sweep.spectypes import RunSettings, slug
from helpers import ROOT, cli, spec_head

SPEC = textwrap.dedent("""\
    budget_minutes = 1
    seeds = [1, 2]

    [base]
    task = "addition"
    steps = 5
    target_acc = 0

    [[variant]]
    name = "fmt"
    grid = { "task.reverse_answer" = [true, false] }
    cases = [{ "train.lr" = 1e-3 }, { name = "slow", "train.lr" = 1e-4 }]

    [[variant]]
    name = "tuned"
    init_from = "fmt.lr=0.001.reverse_answer=true"
    seeds = [2]
""")


def parsed(text: str = SPEC, path: str = "s.toml") -> SpecSource:
    return parse_spec(Path(path), text.encode())


# ---- stage 1: parse -----------------------------------------------------------------------------

def test_parse_gives_the_table_and_the_lines_that_place_errors():
    src = parsed()
    assert src.doc["base"]["task"] == "addition" and src.doc["variant"][1]["seeds"] == [2]
    assert src.line_of("base.steps") == 6 and src.line_of("variant[1].init_from") == 16
    assert src.line_of("variant[0].name", near="fmt") == 10  # the line holding the offending value
    with pytest.raises(UserError, match=r"^s\.toml:7: base\.target_acc: why$"):
        src.fail("base.target_acc", "why")


@pytest.mark.parametrize("data, says", [
    (b"a = 1\n\xff = 2\n", r"s\.toml:2: not UTF-8 text \(byte 0xff\)"),
    (b"a = = 1\n", r"s\.toml: not valid TOML"),
    (b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deep"),
    (b"#" * (MAX_SPEC_BYTES + 1), "larger than 4 MiB"),
])
def test_parse_refuses_what_is_not_a_spec_file_in_one_line(data, says):
    with pytest.raises(UserError, match=says):
        parse_spec(Path("s.toml"), data)


# ---- stage 2: check -----------------------------------------------------------------------------

def test_check_keeps_the_tables_as_written():
    checked = check_spec(parsed())
    fmt, tuned = checked.tables
    assert fmt.grid == (("task.reverse_answer", (True, False)),)
    assert fmt.cases == (Case((("train.lr", 1e-3),)), Case((("train.lr", 1e-4),), "slow"))
    assert fmt.run.sets == () and fmt.run.steps == 5 and fmt.seeds == (1, 2) and fmt.where == "variant[0]."
    assert tuned.init_from == "fmt.lr=0.001.reverse_answer=true" and tuned.seeds == (2,)
    assert checked.name == "s" and checked.budget_minutes == 1.0 and count_runs(checked.source.doc) == 9


def test_include_takes_one_file_as_a_string_or_a_list():
    """`include = "gcd.py"`, as `train --include gcd.py` reads, means the list of that one file."""
    one = check_spec(parsed(SPEC.replace("steps = 5", 'steps = 5\ninclude = "gcd.py"')))
    listed = check_spec(parsed(SPEC.replace("steps = 5", 'steps = 5\ninclude = ["gcd.py"]')))
    assert one.tables[0].run.include == listed.tables[0].run.include == ("gcd.py",)
    with pytest.raises(UserError, match=r"s.toml:7: base.include: expected a list of Python file paths"):
        check_spec(parsed(SPEC.replace("steps = 5", 'steps = 5\ninclude = ""')))


@pytest.mark.parametrize("change, says", [
    (("steps = 5", "steps = 0"), "s.toml:6: base.steps: must be positive, got 0"),
    (("steps = 5", 'steps = "5"'), "s.toml:6: base.steps: expected int, got '5'"),
    (("target_acc = 0", 'device = "tpu"'), "s.toml:7: base.device: unknown device 'tpu'; use auto, cpu, cuda or mps"),
    (('name = "tuned"', 'name = "a/b"'), "s.toml:15: variant[1].name: variant name 'a/b' contains '/'"),
    (("seeds = [2]", "seed = [2]"), "s.toml:17: variant[1].seed: unknown key"),
])
def test_check_refuses_with_file_line_and_key(change, says):
    with pytest.raises(UserError) as e:
        check_spec(parsed(SPEC.replace(*change)))
    assert str(e.value).startswith(says)


def test_check_leaves_target_acc_s_range_to_train_config(tmp_path, capsys):
    """target_acc's range has one owner, TrainConfig: the spec's check takes its type only, and the
    registry check (which resolves every variant as its runs will) refuses it, with its line."""
    text = SPEC.replace("target_acc = 0", "target_acc = 2")
    assert check_spec(parsed(text)).tables[0].run.target_acc == 2
    with pytest.raises(UserError, match="base.target_acc: expected int/float"):
        check_spec(parsed(text.replace("target_acc = 2", 'target_acc = "x"')))
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    code, _, err = cli(capsys, "run", spec, "--dry-run", "--out", tmp_path / "out")
    assert code == 2 and err == (f"error: {spec}:7: variant fmt.lr=0.001.reverse_answer=true: "
                                 "train.target_acc must be in [0, 1], got 2.0\n")


# ---- stage 3: expand ----------------------------------------------------------------------------

def checked_with(*tables: VariantTable) -> CheckedSpec:
    return CheckedSpec(parsed(), "s", "", 1.0, (1,), 1, tables, (), ("val_loss",), "")


def table(name: str, i: int = 0, **kw) -> VariantTable:
    args = dict(run=RunSettings("addition", sets=(("task.max_digits", 3),)), seeds=(1,), init_from="", grid=(),
                cases=(Case(()),))
    return VariantTable(f"variant[{i}].", name, **{**args, **kw})


def test_expand_names_each_case_and_grid_value_in_order():
    spec = expand_spec(checked_with(table("v", grid=(("model.n_layer", (1, 2)), ("train.pack", (True,))),
                                          cases=(Case((("train.lr", 0.1),)), Case((("task.x", "a"),), "named")))))
    assert [v.name for v in spec.variants] == [
        "v.lr=0.1.n_layer=1.pack=true", "v.lr=0.1.n_layer=2.pack=true",
        "v.named.n_layer=1.pack=true", "v.named.n_layer=2.pack=true"]
    first = spec.variants[0]
    assert first.params == (("train.lr", 0.1), ("model.n_layer", 1), ("train.pack", True))
    assert first.run.sets == (("task.max_digits", 3), *first.params)  # base's first, then the case's and grid's


@pytest.mark.parametrize("tables, says", [
    ((table("a"), table("b", 1, init_from="c")), "variant[1].init_from: 'c' is not an earlier variant"),
    ((table("a", init_from="a"),), "variant[0].init_from: 'a' is not an earlier variant"),
    ((table("a"), table("a", 1)), "name: two variants are named 'a'"),
    ((table("a"), table("A", 1)), "variants 'a' and 'A' differ only in case"),
    ((table("v" * 120, grid=(("task.max_digits", (123456789,)),)),), "is longer than 128 bytes"),
])
def test_expand_refuses_what_only_the_expansion_shows(tables, says):
    with pytest.raises(UserError, match=says.replace("[", r"\[").replace("]", r"\]")):
        expand_spec(checked_with(*tables))


def test_load_spec_is_the_three_stages(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    assert load_spec(path) == expand_spec(check_spec(parse_spec(path, SPEC.encode())))


# ---- typed values: one conversion, equal to --set's --------------------------------------------------

VALUES = [0, 1, 2, -3, 10**18, 4.0, 4.5, 1e-4, float("inf"), True, False, "7", "true", "x", "1.5"]


@pytest.mark.parametrize("typ", ["int", "float", "bool", "str", "int | None", int, float, bool, str])
def test_a_typed_value_means_what_the_same_value_written_out_means_to_set(typ):
    """coerce (a spec's TOML value, checked once) agrees with convert of the value as --set would
    have had it written, for every kind of value and field: same value and type, or both refused."""
    for value in VALUES:
        try:
            want = convert(slug(value), typ, "k")
        except UserError:
            with pytest.raises(UserError, match="^k: expected"):
                coerce(value, typ, "k")
            continue
        got = coerce(value, typ, "k")
        assert (got, type(got)) == (want, type(want)), (typ, value)


def test_resolving_typed_values_refuses_a_mistyped_one_by_its_key():
    with pytest.raises(UserError, match=r"^model\.n_layer: expected int, got 2\.5$"):
        resolve_run("addition", overrides=[("model.n_layer", 2.5)])
    assert resolve_run("addition", overrides=[("train.lr", 1)]).train.lr == 1.0
    assert isinstance(resolve_run("addition", target_acc=0).train.target_acc, float)


# ---- how a run reaches its train: the record ----------------------------------------------------------

@pytest.fixture
def caught(monkeypatch):
    """The RunSpec `workbench train` would start a run from, caught instead of trained."""
    specs = []
    monkeypatch.setattr(train_command, "start_run", lambda spec, opts: specs.append(spec))
    return specs


def _text(spec) -> str:
    return json.dumps(spec_to_dict(spec), sort_keys=True)


def _sources(spec, root: Path):
    """Every run of a spec in order, a fine-tuning run's source given a config.json of its record."""
    for k in plan(spec):
        run = k.dir(root)
        run.parent.mkdir(parents=True, exist_ok=True)
        yield k, run, init_dir(spec, k, root)


@pytest.mark.parametrize("spec_file", sorted((ROOT / "experiments" / "specs").glob("*.toml")), ids=lambda p: p.stem)
def test_the_record_and_the_dry_run_s_flags_train_the_same_run(spec_file, tmp_path, caught):
    """For every run of every shipped spec, `train --run-spec FILE` (what the runner starts) and the
    flags a dry run lists (what a user would type) give train one RunSpec: the variant's, resolved."""
    spec = load_spec(spec_file)
    for k, run, src in itertools.islice(_sources(spec, tmp_path), 40):
        want = resolve_variant(k.variant, k.seed, src)
        for args in (start_args(k.variant, k.seed, run, src), train_args(k.variant, k.seed, run, src)):
            assert main([str(a) for a in args]) == 0
            got = caught.pop()  # as JSON text too, where 0 and 0.0 differ as they do in config.json
            assert got == want and _text(got) == _text(want), (k.variant.name, args[:4])
        assert run_spec_file(run).is_file() and read_run_spec_file(run_spec_file(run)) == want
        run.mkdir(exist_ok=True)
        write_config(run, to_record(want, "", want.model, "cpu"))  # for a fine-tuning run's --init-from


def test_a_run_spec_file_round_trips_and_anything_else_is_one_line(tmp_path):
    spec = resolve_run("addition", "small", [("task.max_digits", 3), ("train.lr", 1)], steps=7, seed=5)
    f = tmp_path / "r.json"
    f.write_text(json.dumps(spec_to_dict(spec)))
    assert read_run_spec_file(f) == spec
    for text, says in [("[1]", "expected a run spec"), ("{", "not a run spec"),
                       (json.dumps({**spec_to_dict(spec), "seed": "5"}), "'seed' should be int"),
                       (json.dumps({**spec_to_dict(spec), "train": {"lr": "x"}}), "invalid train section")]:
        f.write_text(text)
        with pytest.raises(UserError, match=says):
            read_run_spec_file(f)


def test_train_refuses_flags_beside_a_run_spec(tmp_path, capsys, caught):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(spec_to_dict(resolve_run("addition"))))
    for args, says in [(["--set", "train.lr=1"], "--set cannot change them"),
                       (["--steps", "3"], "--steps cannot change them"),
                       (["--task", "copy"], "--task copy but --run-spec")]:
        code, _, err = cli(capsys, "train", "--run-spec", f, "--out", tmp_path / "o", *args)
        assert code == 2 and says in err and err.count("\n") == 1, err
    assert cli(capsys, "train", "--run-spec", f, "--task", "addition", "--out", tmp_path / "o")[0] == 0
    assert caught == [resolve_run("addition")]


def test_a_fine_tuning_run_whose_settings_do_not_resolve_is_recorded_failed(tmp_path, capsys):
    """Checked before its source exists, a fine-tuning run's model keys resolve against its source's
    model when it starts: one that does not fit is that run's failure, in its result and log."""
    spec = tmp_path / "s.toml"
    spec.write_text(spec_head() + textwrap.dedent("""
        [[variant]]
        name = "pre"
        [[variant]]
        name = "tune"
        init_from = "pre"
        set = { "model.n_head" = 3 }
    """))
    out = tmp_path / "out"
    code, text, err = cli(capsys, "run", spec, "--out", out)
    assert code == 0 and "1 done, 1 failed" in text, err
    result = json.loads((out / "tune" / "seed1" / "result.json").read_text())
    assert result["error"].startswith("its settings do not resolve: ") and "model.n_head (3)" in result["error"]
    assert "error: " in (out / "tune" / "seed1.log").read_text()
    assert not list(out.rglob("*.run-spec.json"))  # each record is removed once its train has ended
