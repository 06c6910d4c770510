"""reasoning-gym both ways: rg:NAME tasks in the workbench, workbench tasks as reasoning-gym datasets.

The references are independent of the code under test: reasoning-gym's own scorer and dataset
instances, Python's arithmetic, and `workbench eval`'s own records of what it scored.
"""

import doctest
import importlib
import json
import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tasks
from conftest import need_module
from experiments.build import build
from experiments.errors import install_hint
from experiments.rundir import new_run_dir
from experiments.runspec import resolve_spec
from experiments.training import TrainOptions, start_run
from helpers import ROOT, TINY, cli
from tasks.addition import AdditionTask
from tasks.base import makes_problems
from tasks.testing import check_task
from test_guide import blocks


@pytest.fixture(scope="module")
def rg():
    return need_module("reasoning_gym", "rg")


@pytest.fixture(scope="module")
def rg_task(rg):
    return importlib.import_module("tasks.rg_task")


@pytest.fixture(scope="module")
def wrg(rg):
    return importlib.import_module("tasks.reasoning_gym")


def rg_built(name: str, *sets: str):
    """The rg:NAME task as `workbench train --set ...` builds it."""
    return build(resolve_spec(f"rg:{name}", sets=list(sets))).task


# ---- reasoning-gym into the workbench ---------------------------------------------------------

@pytest.mark.parametrize("name,options", [
    ("chain_sum", {"rg_max_terms": 3, "rg_max_digits": 2, "buckets": "num_terms"}),
    ("spell_backward", {"rg_max_word_len": 5, "buckets": "word_len"}),
])
def test_rg_tasks_pass_the_conformance_kit(rg_task, name, options):
    cls = rg_task.task_class(name)
    names = [r.name for r in check_task(cls, cls.Config(**options), examples=4)]
    assert "train and test disjoint" in names and "parse_answer(render) == solve" in names


def test_set_reaches_the_dataset_and_answers_are_python_arithmetic(rg_task):
    task = rg_built("basic_arithmetic", "task.rg_min_terms=2", "task.rg_max_terms=3", "task.rg_max_digits=2",
                    'task.rg_operators=["+","-"]', "task.rg_allow_parentheses=false",
                    "task.rg_allow_negation=false", "task.buckets=num_terms")
    p = task.problems(np.random.default_rng(0), 200, "train")
    r = task.render(p)
    for i in range(len(p)):
        question = r.prompt(i)
        assert question.startswith("Calculate ") and question.endswith(".\n") and "*" not in question
        expr = question.removeprefix("Calculate ").removesuffix(".\n")
        assert re.fullmatch(r"[0-9]+( [+-] [0-9]+)+", expr), expr
        assert eval(expr) == int(r.target(i))  # noqa: S307 - numbers, + and - only (matched above)
        assert p["num_terms"][i] == expr.count("+") + expr.count("-") + 1 <= 3
    assert set(task.buckets) == {"num_terms"} and task.vocab.chars.endswith("$")


def test_train_and_test_share_no_question(rg_task):
    """Few words (3 and 4 letters), so many items repeat a question: a split by item rather than by
    question would put the same word on both sides."""
    task = rg_task.task_class("spell_backward")(rg_task.task_class("spell_backward").Config(rg_max_word_len=4))
    rng = np.random.default_rng(1)
    train, test = task.problems(rng, 3000, "train"), task.problems(rng, 300, "test")
    assert len(set(test["question"])) < 300  # repeats: the test set is small
    assert not set(train["question"]) & set(test["question"])


@settings(max_examples=30, deadline=None)
@given(idx=st.integers(0, 10**6 - 1), change=st.sampled_from(["same", "x.0", "+x", "0x", "x1", "x ", "", "junk", "-x"]))
def test_correct_is_reasoning_gym_s_own_score_of_one(rg, rg_task, idx, change):
    cls = rg_task.task_class("chain_sum")
    task = cls(cls.Config(rg_max_terms=3, rg_max_digits=2))
    item = task.dataset[idx]
    p = task.from_items([item])
    answer, prompt = task.solve(p)[0], task.render(p).prompt(0)
    completion = {"same": answer, "x.0": answer + ".0", "+x": "+" + answer, "0x": "0" + answer, "x1": answer + "1",
                  "x ": answer + " ", "": "", "junk": "junk", "-x": "-" + answer}[change]
    reference = rg.get_score_answer_fn("chain_sum")(completion, item)  # a fresh instance of reasoning-gym's own
    assert task.check_answer(completion, answer, prompt) == {"correct": reference == 1.0}


def test_train_eval_and_the_run_folder(rg_task, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sets = [TINY[i + 1] for i in range(0, len(TINY), 2)] + [
        "model.block_size=80", "task.rg_max_terms=2", "task.rg_max_digits=2", "task.buckets=num_digits"]
    spec = resolve_spec("rg:chain_sum", sets=sets, steps=4, target_acc=0)
    run = new_run_dir(spec.task)
    start_run(spec, TrainOptions(out=run, device="cpu", quiet=True, eval_n=0))
    assert run.parent.name == "runs" and run.name.startswith("rg-chain_sum-")  # no colon in a folder name
    config = json.loads((run / "config.json").read_text())
    assert config["task"]["origin"] == "reasoning-gym" and config["task"]["config"]["rg_max_terms"] == 2
    code, out, err = cli(capsys, "eval", run, "--n", "40", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["num_digits"] for r in rows} <= {"1", "2", "all"} and rows[-1]["n"] == 40


@pytest.mark.parametrize("sets,says", [
    (["task.rg_max_term=2"], "did you mean task.rg_max_terms?"),
    (["task.rg_operators=+"], "rg_operators is JSON text"),
    (['task.rg_operators=["x"]'], "refuses these options: unsupported operator: x"),
    (["task.rg_format_style=fancy"], "rg_format_style must be one of simple, natural"),
    (["task.buckets=colour"], "no metadata 'colour'; they have source_dataset"),
])
def test_bad_options_are_one_line(rg, capsys, sets, says):
    args = [a for s in sets for a in ("--set", s)]
    code, _, err = cli(capsys, "show", "--task", "rg:basic_arithmetic", *args, "-n", "1")
    assert code == 2 and err.count("\n") == 1 and says in err, err


def test_an_unknown_dataset_gets_suggestions(rg, capsys):
    code, _, err = cli(capsys, "show", "--task", "rg:chain_su")
    assert code == 2 and err.strip() == "error: reasoning-gym has no dataset 'chain_su'; did you mean rg:chain_sum, " \
                                        "rg:decimal_chain_sum?"


def test_without_the_extra_one_line_names_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import reasoning_gym now fails
    code, _, err = cli(capsys, "train", "--task", "rg:chain_sum", "--steps", "1")
    assert code == 2 and err == f"error: task 'rg:chain_sum' needs reasoning-gym: {install_hint('rg')}\n"
    monkeypatch.delitem(sys.modules, "tasks.reasoning_gym", raising=False)
    with pytest.raises(ImportError, match=r"^tasks.reasoning_gym needs reasoning-gym: pip install 'workbench\[rg\]'$"):
        importlib.import_module("tasks.reasoning_gym")


# ---- the workbench into reasoning-gym ---------------------------------------------------------

def test_every_problem_task_is_registered(rg, wrg):
    problem_tasks = {n for n in tasks.available() if makes_problems(tasks.get_task_class(n))}
    assert set(wrg.REGISTERED) == {f"workbench_{n}" for n in problem_tasks}
    assert "workbench_addition" in wrg.REGISTERED and "workbench_shakespeare" not in wrg.REGISTERED
    assert wrg.reasoning_gym is rg  # the real package, not this module
    data = rg.create_dataset("workbench_multiplication", size=3, seed=2, format="reversed")
    assert data.task.config.format == "reversed" and len(list(data)) == 3


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 40))
def test_addition_items_are_held_out_sums(wrg, seed, size):
    data = wrg.dataset("addition", size=size, seed=seed, max_digits=4)
    items = list(data)
    task = AdditionTask()
    problems = task.problems_from_prompts([it["question"] for it in items])
    assert task.is_test(problems).all()  # from the held-out side of the workbench's own hash
    for it in items:
        a, b = map(int, it["question"].removesuffix("=").split("+"))
        assert it["answer"] == str(a + b)[::-1] and it["metadata"]["expected"] == str(a + b)
        assert (it["metadata"]["a_digits"], it["metadata"]["b_digits"]) == (len(str(a)), len(str(b)))
        assert data.score_answer(it["answer"], it) == 1.0 and data.score_answer(str(a + b + 1)[::-1], it) == 0.0


def test_the_guide_s_reasoning_gym_section_runs(wrg, tmp_path, monkeypatch):
    """docs/adding-a-task.md, section 8: its digit_sum task, registered from the file, scores its own answers."""
    guide = (ROOT / "docs" / "adding-a-task.md").read_text(encoding="utf-8")
    (_, task_file), = blocks(guide, "file")
    (tmp_path / "digit_sum.py").write_text(task_file, encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", guide[guide.index("## 8. "):], re.S).group(1)
    monkeypatch.chdir(tmp_path)
    run: dict = {}
    exec(compile(code, "adding-a-task.md, section 8", "exec"), run)  # noqa: S102 - the guide's own code
    item = run["item"]
    assert str(sum(map(int, item["question"].removesuffix("=")))) == item["answer"]  # Python's digit sum
    assert run["data"].score_answer(item["answer"], item) == 1.0 and item["metadata"]["length"] <= 8


def test_the_docstring_examples_run(wrg):
    assert doctest.testmod(wrg).failed == 0  # partial credit as tasks/rewards.py gives it, on a calculator trace


def test_round_trip_reasoning_gym_scores_workbench_eval_s_completions_alike(rg, wrg, addition_run, tmp_path, capsys):
    """The shared 150-step addition run (tests/conftest.py): most answers right, some wrong."""
    samples = tmp_path / "samples.jsonl"
    code, out, err = cli(capsys, "eval", addition_run, "--n", "300", "--seed", "5", "--samples", samples,
                         "--format", "json")
    assert code == 0, err
    whole = json.loads(out)[-1]
    scored = [json.loads(line) for line in samples.read_text().splitlines()]
    options = json.loads((addition_run / "config.json").read_text())["task"]["config"]
    data = rg.create_dataset("workbench_addition", size=300, seed=5, **options)
    assert [it["question"] for it in data] == [s["prompt"] for s in scored]  # eval's problems, in its order
    rewards = [data.score_answer(s["got"], it) for s, it in zip(scored, data)]
    assert [r == 1.0 for r in rewards] == [s["correct"] for s in scored]
    assert sum(r == 1.0 for r in rewards) == whole["correct"] and 0 < whole["correct"] < 300
