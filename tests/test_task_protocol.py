"""The task protocol: BaseTask (every task) and Task (problems); loss tasks carry no problem machinery."""

from dataclasses import dataclass

import numpy as np
import pytest

from tasks.addition import AdditionConfig, AdditionTask
from tasks.base import BaseTask, Example, Task, TaskConfig, check_contract, makes_problems
from tasks.encode import Vocab
from tasks.testing import check_task, run_checks
from tasks.text import TextConfig, TextTask


def corpus(tmp_path) -> TextTask:
    f = tmp_path / "corpus.txt"
    f.write_text("to be or not to be, 42 times\n" * 40, encoding="utf-8")
    return TextTask(TextConfig(path=str(f)))


def test_a_text_task_is_a_base_task_without_problems(tmp_path):
    task = corpus(tmp_path)
    assert isinstance(task, BaseTask) and not isinstance(task, Task) and not makes_problems(TextTask)
    for member in ("sample", "render", "solve", "parse_answer", "problems", "train_pool", "key_columns"):
        assert not hasattr(task, member), member
    assert task.metric == "loss" and task.end_id is None and task.train_size == 0 and task.buckets == ()
    with pytest.raises(ValueError, match="scored by its loss"):
        task.position_scheme("abacus")  # its vocabulary has digits, but no problems to number
    check_contract(TextTask)


@dataclass(frozen=True)
class WindowConfig(TaskConfig):
    width: int = 4

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be at least 1, got {self.width}")


class Windows(BaseTask):
    """Windows of a fixed cycle of digits: the smallest loss task."""

    name = "windows"
    Config = WindowConfig

    def make_vocab(self) -> Vocab:
        return Vocab("0123456789")

    def batch(self, seed, split, step, micro, batch_size, block_size):
        start = self.rng(seed, split, step, micro).integers(0, 10, size=(batch_size, 1))
        w = (start + np.arange(block_size + 1)[None, :]) % 10
        return w[:, :-1], w[:, 1:]

    def check_block_size(self, block_size: int) -> None:
        pass

    def examples(self, seed, split, n):
        x, y = self.batch(seed, split, 0, 0, n, self.config.width)
        return [Example(xs=[str(t) for t in a], ys=[str(t) for t in b]) for a, b in zip(x, y)]


def test_a_loss_task_of_ones_own_passes_the_kit():
    names = [r.name for r in check_task(Windows, examples=5)]
    assert names == ["contract", "config validation", "construct", "determinism per (seed, split, step)",
                     "different seeds, different data"]


def test_the_contract_names_what_a_loss_task_lacks():
    class NoBatch(Windows):
        name = "no_batch"
        batch = BaseTask.batch

    class Scored(Windows):
        name = "scored"
        metric = "accuracy"

    with pytest.raises(TypeError, match="does not implement batch"):
        check_contract(NoBatch)
    with pytest.raises(TypeError, match="subclass tasks.base.Task"):
        check_contract(Scored)
    with pytest.raises(TypeError, match="not a subclass"):
        check_contract(object)


class OldStyleLoss(Task):
    """A loss task as one was written before BaseTask: a Task that declares metric "loss"."""

    name = "old_style_loss"
    metric = "loss"
    make_vocab, batch, check_block_size, examples = (Windows.make_vocab, Windows.batch, Windows.check_block_size,
                                                     Windows.examples)
    Config = WindowConfig

    @property
    def end_id(self) -> None:
        return None


def test_a_loss_task_written_as_a_task_still_loads_and_checks():
    assert not makes_problems(OldStyleLoss)
    check_contract(OldStyleLoss)
    results = run_checks(OldStyleLoss, examples=5)
    assert all(r.ok for r in results) and len(results) == 5


def test_the_training_pool_is_drawn_once_per_seed_and_task():
    task = AdditionTask(AdditionConfig(train_size=20))
    assert task._pools == {}
    pool = task.train_pool(3)
    assert task.train_pool(3) is pool and list(task._pools) == [3] and len(pool) == 20
    again = AdditionTask(AdditionConfig(train_size=20))
    assert again._pools == {}  # not shared between tasks
    assert np.array_equal(again.train_pool(3)["a"], pool["a"])  # a pure function of the seed
