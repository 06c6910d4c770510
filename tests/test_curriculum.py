"""Curricula: a task's levels (tasks/curriculum.py) and a run that climbs them (experiments/curriculum.py)."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.build import build
from experiments.curriculum import LevelSchedule, make_schedule
from experiments.curriculum_config import check_curriculum
from experiments.errors import UserError
from experiments.runspec import from_record, resolve_spec, to_record
from gpt.checkpoint import load_checkpoint
from gpt.config import TrainConfig
from helpers import TINY, cli, killed, metrics, forked_run
from tasks.addition import AdditionConfig, AdditionTask, n_digits
from tasks.calculator import CalculatorTask
from tasks.copy import CopyConfig, CopyTask
from tasks.curriculum import Curriculum, level_tasks
from tasks.modular import ModularTask
from tasks.multiplication import MultiplicationConfig, MultiplicationTask
from tasks.testing import check_task

ADD = AdditionTask(AdditionConfig(max_digits=4, zero_pad=True))


def test_addition_levels_worked_example():
    assert AdditionTask(AdditionConfig(max_digits=3)).levels() == [
        {"max_digits": 1, "min_digits": 1}, {"max_digits": 2, "min_digits": 1}, {}]
    assert MultiplicationTask(MultiplicationConfig(min_digits=3, max_digits=3)).levels() == [
        {"max_digits": 1, "min_digits": 1}, {"max_digits": 2, "min_digits": 2}, {}]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), level=st.integers(0, 3), replay=st.sampled_from([0.0, 0.2, 0.5]))
def test_level_problems_stay_within_their_level_and_replay_is_earlier_levels(seed, level, replay):
    cur = Curriculum(ADD, replay)
    p = cur.problems(level, np.random.default_rng(seed), 400)
    a, b = n_digits(p["a"]), n_digits(p["b"])
    longest = np.maximum(a, b)
    assert longest.max() <= level + 1  # nothing harder than the level
    assert not ADD.is_test(p).any()
    assert p["a"].shape[1] == ADD.config.max_digits  # widened to the full task's matrices
    if level and replay:
        # problems of level k have a (k+1)-digit operand with odds 1 - (k/(k+1))^2; earlier ones never
        top = (longest == level + 1).mean()
        expect = (1 - replay) * (1 - (level / (level + 1)) ** 2)
        assert abs(top - expect) < 0.1, (top, expect)


def test_replay_zero_draws_exactly_the_level_task_and_the_val_split_is_the_whole_task():
    cur = Curriculum(ADD, 0.0)
    got = cur.problems(1, np.random.default_rng(7), 50)
    want = cur.stages[1].problems(np.random.default_rng(7), 50, "train")
    assert np.array_equal(got["a"][:, :2], want["a"]) and not got["a"][:, 2:].any()
    x, y = cur.batch(0, 3, "val", 5, 0, 32, 20)
    x2, y2 = ADD.batch(3, "val", 5, 0, 32, 20)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_batches_are_a_pure_function_of_seed_step_and_level():
    cur = Curriculum(ADD, 0.2)
    a = cur.batch(2, 1, "train", 9, 0, 64, 20)
    assert all(np.array_equal(u, v) for u, v in zip(a, cur.batch(2, 1, "train", 9, 0, 64, 20)))
    assert not np.array_equal(a[0], cur.batch(1, 1, "train", 9, 0, 64, 20)[0])


@pytest.mark.parametrize("task", [ADD, MultiplicationTask(MultiplicationConfig(min_digits=3, max_digits=3)),
                                  CalculatorTask(), CopyTask(CopyConfig(max_len=5))], ids=lambda t: t.name)
def test_the_conformance_kit_checks_each_tasks_levels(task):
    names = [r.name for r in check_task(type(task), task.config, examples=5)]
    assert "levels of difficulty" in names


def test_the_kit_fails_a_level_that_is_harder_than_the_task():
    class Wrong(AdditionTask):
        def levels(self):
            return [{"max_digits": self.config.max_digits + 2}, {}]

    with pytest.raises(AssertionError, match="levels of difficulty"):
        check_task(Wrong, AdditionConfig(max_digits=2), examples=3)


def test_bad_levels_are_clear_errors():
    class Unknown(AdditionTask):
        def levels(self):
            return [{"digits": 1}, {}]

    class NotLast(AdditionTask):
        def levels(self):
            return [{"max_digits": 1}, {"max_digits": 2}]

    with pytest.raises(ValueError, match="unknown options digits"):
        level_tasks(Unknown(AdditionConfig(max_digits=3)))
    with pytest.raises(ValueError, match="last level must be the task as configured"):
        level_tasks(NotLast(AdditionConfig(max_digits=3)))
    with pytest.raises(ValueError, match="declares no levels"):
        level_tasks(ModularTask())


def test_a_task_without_levels_gets_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "--task", "modular", "--set", "train.curriculum=auto", "--steps", "1",
                       "--out", tmp_path / "r", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "declares no levels" in err, err
    assert not (tmp_path / "r").exists()


def test_the_schedule_moves_up_at_the_threshold_and_not_before(monkeypatch):
    sched = make_schedule(ADD, TrainConfig(curriculum="auto", curriculum_threshold=0.5), 50)
    assert isinstance(sched, LevelSchedule) and sched.level == 0
    scores = iter([0.2, 0.6, 0.5])
    scored = []

    def fake_accuracy(model, task, problems):
        scored.append(int(np.maximum(n_digits(problems["a"]), n_digits(problems["b"])).max()))
        return next(scores)

    monkeypatch.setattr("experiments.curriculum.accuracy", fake_accuracy)
    assert sched.evaluate(None) == {"level_acc": 0.2} and sched.level == 0
    assert sched.evaluate(None) == {"level_acc": 0.6} and sched.level == 1
    assert sched.evaluate(None) == {"level_acc": 0.5} and sched.level == 2
    assert scored == [1, 1, 2]  # each check scores the current level's problems
    sched.level = sched.last
    assert sched.evaluate(None) == {}  # the last level: val_acc is the score
    with pytest.raises(ValueError, match="not one of this task's levels"):
        sched.load_state_dict({"level": 9})
    with pytest.raises(UserError, match="train_size"):
        make_schedule(AdditionTask(AdditionConfig(train_size=100)), TrainConfig(curriculum="auto"), 50)


@pytest.mark.parametrize("bad", [dict(curriculum="on"), dict(curriculum_threshold=0.0),
                                 dict(curriculum_replay=1.0)])
def test_curriculum_options_are_validated(bad):
    with pytest.raises(ValueError, match="train.curriculum"):
        check_curriculum(TrainConfig(**bad))


def test_gpt_leaves_the_curriculum_settings_it_never_reads_to_the_workbench(tmp_path, capsys):
    assert TrainConfig(curriculum="bogus").curriculum == "bogus"  # gpt/ holds the field, unchecked
    with pytest.raises(UserError, match="train.curriculum must be one of off, auto, got 'bogus'"):
        resolve_spec("addition", sets=["train.curriculum=bogus"])
    with pytest.raises(UserError, match="train.curriculum_threshold"):
        make_schedule(ADD, TrainConfig(curriculum="auto", curriculum_threshold=2.0), 50)
    code, _, err = cli(capsys, "train", "--task", "addition", "--set", "train.curriculum=bogus", "--steps", "1",
                       "--out", tmp_path / "r", "--quiet")
    assert code == 2 and err == "error: train.curriculum must be one of off, auto, got 'bogus'\n", err
    assert not (tmp_path / "r").exists()


def test_a_record_with_a_bad_curriculum_setting_is_refused_as_its_other_settings_are():
    spec = resolve_spec("addition", sets=["train.curriculum=auto"])
    built = build(spec)
    record = json.loads(json.dumps(to_record(spec, built.task.vocab.chars, built.model, torch.device("cpu"))))
    assert from_record(record).train.curriculum == "auto"
    record["train"]["curriculum_replay"] = 1.5
    with pytest.raises(UserError, match="invalid train section: train.curriculum_replay must be in"):
        from_record(record)


STEPS = 40


def run_args(out, *extra, steps=STEPS, quiet=True):
    return ["train", "--task", "addition", "--preset", "small", *TINY, "--steps", steps, *(["--quiet"] if quiet else []),
            "--set", "task.max_digits=3", "--set", "train.eval_interval=10", "--set", "train.warmup_steps=5",
            "--set", "train.curriculum=auto", "--set", "train.curriculum_threshold=0.05",
            "--set", "model.block_size=12", "--set", "train.batch_size=64", "--set", "train.lr=1e-2", "--target-acc", "0", "--out", out, "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def climbed(tmp_path_factory):
    out = tmp_path_factory.mktemp("cur") / "run"
    p = forked_run(*run_args(out))
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_a_run_logs_its_level_and_climbs(climbed):
    recs = metrics(climbed)
    assert all("level" in r for r in recs)  # every logged record, evals included
    levels = [r["level"] for r in recs]
    assert levels == sorted(levels) and levels[-1] > 0, levels  # it moved up, and never down
    evals = [r for r in recs if "val_loss" in r]
    moved = [e for e, nxt in zip(evals, evals[1:]) if nxt["level"] > e["level"]]
    assert moved and all(e["level_acc"] >= 0.05 for e in moved)  # up only at the threshold
    assert all(e["level_acc"] < 0.05 for e in evals if e not in moved and "level_acc" in e)
    assert load_checkpoint(climbed / "ckpt.pt")["schedule"] == {"level": levels[-1]}


def test_resume_after_a_kill_replays_the_same_levels_and_batches(climbed, tmp_path, capsys):
    run = tmp_path / "run"
    p = forked_run(*run_args(run), fault="kill:step=25")
    assert killed(p), p.stderr[-2000:]
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--quiet", "--device", "cpu")
    assert code == 0, err
    assert metrics(run) == metrics(climbed)  # bit-identical, level by level


def test_the_progress_line_shows_the_level(tmp_path, capsys):
    code, _, err = cli(capsys, *run_args(tmp_path / "r", steps=10, quiet=False))
    assert code == 0, err
    assert "level 0" in err and "curriculum: 3 levels" in err

