"""Every workbench problem task as a reasoning-gym dataset, drawn from its held-out problems.

Importing this module registers `workbench_NAME` with reasoning-gym for each problem task the
workbench knows (built-ins and installed plugins; a task from a file of your own: include it with
tasks.include_file, then call register(NAME)):

    >>> import reasoning_gym
    >>> import tasks.reasoning_gym as wrg
    >>> data = wrg.dataset("calculator", size=100, seed=0, max_ops=2)  # its trace: cot=steps, reversed numbers
    >>> item = data[2]
    >>> item["question"], item["answer"], item["metadata"]["expected"], item["metadata"]["n_ops"]
    ('12-24*3=', '21-27=-06', '-60', 2)
    >>> [data.score_answer(a, item) for a in ("21-27=-06", "21-27=-05", "21-28=-07", None)]
    [1.0, 0.5, 0.0, 0.0]
    >>> reasoning_gym.create_dataset("workbench_addition", size=10, seed=1, max_digits=5)[3]["question"]
    '85489+589='

The options are the task's own (`workbench tasks` lists them) beside reasoning-gym's `seed` and
`size`.  An item is {question, answer, metadata}: the prompt as `workbench show` renders it, the
target without END, and metadata holding the task's buckets (a_digits, n_ops, ...), `expected`
(the task's solved answer, as text) and `task`.

Items are test problems: the ones Task.is_test holds out of training by the task's salted hash,
so no workbench run has trained on them.  Item i of dataset(task, size=n, seed=s) is problem i
of `workbench eval --n n --seed s`: the very set that command scores, in its order.

score_answer(answer, item) is the task's own scoring as tasks/rewards.py gives it with partial
credit: 1.0 for the right answer (the task's parser, END and what follows cut off), else the
share of a checked trace's steps right before its first mistake (calculator, multiplication
scratchpad), else 0.0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

try:  # the `rg` extra
    import reasoning_gym
    from reasoning_gym.dataset import ProceduralDataset
    from reasoning_gym.factory import DATASETS
except ImportError:
    raise ImportError("tasks.reasoning_gym needs reasoning-gym: pip install 'workbench[rg]'") from None

import tasks as registry
from tasks.base import EVAL_CHUNK, Task, makes_problems
from tasks.rewards import reward_fn

PREFIX = "workbench_"  # reasoning-gym's name for the workbench task NAME: workbench_NAME
CHUNKS_KEPT = 2  # rendered chunks a dataset keeps (a chunk is EVAL_CHUNK problems)


@dataclasses.dataclass
class WorkbenchConfig:
    """A dataset's config: config_class adds the task's options as fields.  Mutable and with
    `seed` and `size`, as reasoning-gym's configs are (its ReseedingDataset sets seed)."""

    seed: int | None = None  # None: reasoning-gym's convention, a seed drawn by the dataset
    size: int = 500

    task: ClassVar[str] = ""  # the workbench task's name

    def task_options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("seed", "size")}

    def validate(self) -> None:
        """ValueError for a size below 1 or options the task refuses (its own message)."""
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")
        make_task(self)


class WorkbenchDataset(ProceduralDataset):
    """A workbench task's held-out problems as reasoning-gym items (module docstring)."""

    def __init__(self, config: WorkbenchConfig):
        super().__init__(config=config, seed=config.seed, size=config.size)
        self.task = make_task(config)
        self.reward = reward_fn(self.task, partial_credit=True)
        self.chunks: dict[int, list[dict[str, Any]]] = {}  # by the index of their first problem

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not 0 <= idx < self.size:
            raise IndexError(f"item {idx} of a dataset of {self.size}")
        start = idx - idx % EVAL_CHUNK
        if start not in self.chunks:
            if len(self.chunks) >= CHUNKS_KEPT:
                self.chunks.pop(next(iter(self.chunks)))
            self.chunks[start] = self.items(start)
        return self.chunks[start][idx - start]

    def items(self, start: int) -> list[dict[str, Any]]:
        """The items of the eval chunk that begins at `start`, rendered and solved together."""
        task = self.task
        problems = task.eval_chunk(self.seed, "test", self.size, start)
        r, answers = task.render(problems), task.solve(problems)
        name = PREFIX + task.name
        return [{"question": r.prompt(i), "answer": r.target(i),
                 "metadata": {**{b: _plain(problems[b][i]) for b in task.buckets}, "source_dataset": name,
                              "source_index": start + i, "task": task.name, "expected": str(answers[i])}}
                for i in range(len(problems))]

    def score_answer(self, answer: str | None, entry: dict[str, Any]) -> float:
        """The task's reward (tasks/rewards.py, partial credit) for an answer to the item."""
        return self.reward([entry["question"]], [answer], answer=[entry["metadata"]["expected"]])[0]


def make_task(config: WorkbenchConfig) -> Task:
    """The workbench task a dataset config names, configured with its options."""
    cls = registry.get_task_class(config.task)
    return cls(cls.Config(**config.task_options()))


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value it holds (metadata is JSON-ready)."""
    return v.item() if isinstance(v, np.generic) else v


def config_class(task: type[Task]) -> type[WorkbenchConfig]:
    """WorkbenchConfig with the task's options as fields, their defaults the task's."""
    specs = []
    for f in dataclasses.fields(task.Config):
        if f.init:
            default = dataclasses.field(default=f.default) if f.default is not dataclasses.MISSING else \
                dataclasses.field(default_factory=f.default_factory)
            specs.append((f.name, f.type, default))
    return dataclasses.make_dataclass(f"Workbench_{task.name}_Config", specs, bases=(WorkbenchConfig,),
                                      namespace={"__module__": __name__, "task": task.name})


def register(task_name: str) -> str:
    """Register the workbench problem task `task_name` with reasoning-gym (once); its name there.
    ValueError for a task without problems (text, shakespeare) or options named seed or size."""
    name = PREFIX + task_name
    if name in DATASETS:
        return name
    cls = registry.get_task_class(task_name)
    if not makes_problems(cls):
        raise ValueError(f"task {task_name!r} is scored by its loss: it has no questions and answers")
    clash = {f.name for f in dataclasses.fields(cls.Config)} & {"seed", "size"}
    if clash:
        raise ValueError(f"task {task_name!r} has an option named {clash.pop()}, reasoning-gym's own")
    reasoning_gym.register_dataset(name, WorkbenchDataset, config_class(cls))
    return name


def register_all() -> list[str]:
    """Register every problem task the registry knows; a plugin that fails to load is left out."""
    names = []
    for task_name in registry.available():
        try:
            names.append(register(task_name))
        except (registry.TaskLoadError, ValueError):
            continue
    return names


def dataset(task_name: str, size: int = 500, seed: int | None = None, **options: Any) -> ProceduralDataset:
    """reasoning_gym.create_dataset("workbench_" + task_name, ...): the task's held-out problems
    as a reasoning-gym dataset, with the task's options."""
    return reasoning_gym.create_dataset(register(task_name), size=size, seed=seed, **options)


REGISTERED = register_all()
