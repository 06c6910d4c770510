"""Any reasoning-gym dataset as a workbench task: `workbench train --task rg:NAME`.

Worked example, `--task rg:chain_sum --set task.rg_max_terms=2 --set task.rg_max_digits=2`:

    item      question "State the final answer to the following arithmetic problem: 41 - 7 ="
              answer   "34"
    prompt    the question, then SEP ("\\n"), which closes every prompt
    target    "34$"

The dataset's options are this task's `rg_KEY` options: `--set task.rg_max_terms=2` sets
reasoning-gym's `max_terms` (`--set` keys are `section.field`, so `rg_` stands where `rg.` would).
They keep reasoning-gym's names and defaults; numbers, flags and words are set as they are, any
other type (a list, an optional value) as JSON: `--set 'task.rg_operators=["+","-"]'`.  Two are the
workbench's: reasoning-gym's `seed` is 0 and no option, since the run's seed picks the items, and
`rg_size` (reasoning-gym's `size`: items 0 .. rg_size-1 exist) defaults to a million.  `buckets`
names metadata keys for eval tables to group by (`--set task.buckets=num_terms`).

Vocabulary: the characters of the dataset's first PROBE items, and SEP, found when the task is
built.  An item with any other character, or longer than the longest of those, or with END ("$")
in it, is never drawn: max_length is exact and every character has a token.

Held out: 5% of the questions, by a hash of the question's text (Task.is_test on its `key`), so
train and test never share a question, however many items ask it.

Scoring: reasoning-gym's own `score_answer(completion, item)`; a completion is correct when it
scores 1.0 (its equivalences are the dataset's: chain_sum takes "34.0" for "34").
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import typing
from typing import Any, ClassVar

import numpy as np

try:  # the `rg` extra: experiments/registry.py names the install command before this module loads
    import reasoning_gym
    from reasoning_gym.factory import DATASETS
except ImportError:
    raise ImportError("rg:NAME tasks need reasoning-gym: pip install 'workbench[rg]'") from None

from tasks.base import Fault, Problems, Task, TaskConfig
from tasks.encode import END, Rendered, render_strings

PREFIX = "rg:"  # a task name rg:NAME is reasoning-gym's dataset NAME
SEP = "\n"  # closes each question: the answer starts after it
PROBE = 2048  # items whose characters make the vocabulary
ITEMS = 1_000_000  # rg_size's default: the items a run draws from
SCALARS = (bool, int, float, str)  # option types --set converts; any other is JSON text
COLUMNS = ("key", "question", "entry")  # the problem columns a bucket must not shadow


@dataclasses.dataclass(frozen=True)
class RGConfig(TaskConfig):
    """The options of every rg:NAME task; config_class adds the dataset's own, as rg_KEY fields."""

    buckets: str = ""  # metadata keys, comma-separated, that eval tables group by
    mask_prompt: bool = True
    train_size: int = 0

    dataset: ClassVar[str] = ""  # reasoning-gym's name for the dataset
    as_json: ClassVar[frozenset[str]] = frozenset()  # rg_KEY options written as JSON text
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}  # rg_KEY options of a Literal type: their words

    def __post_init__(self) -> None:
        if self.train_size < 0:
            raise ValueError(f"train_size must be >= 0 (0: unlimited), got {self.train_size}")
        if self.items < 1:
            raise ValueError(f"rg_size must be at least 1, got {self.items}")
        clash = [b for b in self.bucket_keys() if b in COLUMNS]
        if clash:
            raise ValueError(f"buckets: {clash[0]!r} is a column of the task itself; choose other metadata keys")
        dataset = self.make_dataset()
        try:
            item = dataset[0]
        except Exception as e:  # noqa: BLE001 - options its validate() let through can break generation anywhere
            raise ValueError(f"reasoning-gym's {self.dataset} cannot make an item with these options: "
                             f"{type(e).__name__}: {e}") from None
        missing = [b for b in self.bucket_keys() if b not in item.get("metadata", {})]
        if missing:
            raise ValueError(f"buckets: {self.dataset}'s items have no metadata {missing[0]!r}; they have "
                             f"{', '.join(item.get('metadata', {}))}")

    @property
    def items(self) -> int:
        """How many items there are to draw from (rg_size, where the dataset has a size)."""
        return getattr(self, "rg_size", ITEMS)

    def bucket_keys(self) -> tuple[str, ...]:
        return tuple(b.strip() for b in self.buckets.split(",") if b.strip())

    def rg_options(self) -> dict[str, Any]:
        """The dataset's config, as reasoning_gym.create_dataset takes it (seed 0)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if not f.name.startswith("rg_"):
                continue
            key, value = f.name.removeprefix("rg_"), getattr(self, f.name)
            if f.name in self.as_json:
                try:
                    value = json.loads(value)
                except ValueError:
                    raise ValueError(f"{f.name} is JSON text, e.g. {f.default}; got {value!r}") from None
            if f.name in self.choices and value not in self.choices[f.name]:
                raise ValueError(f"{f.name} must be one of {', '.join(self.choices[f.name])}, got {value!r}")
            out[key] = value
        has_seed = any(f.name == "seed" for f in dataclasses.fields(DATASETS[self.dataset][1]))
        return {**out, "seed": 0} if has_seed else out

    def make_dataset(self) -> Any:
        """The reasoning-gym dataset; ValueError when it refuses these options."""
        if self.dataset not in DATASETS:
            raise ValueError(f"no reasoning-gym dataset named {self.dataset!r}: name one as rg:NAME")
        options = self.rg_options()
        try:
            return reasoning_gym.create_dataset(self.dataset, **options)
        except Exception as e:  # noqa: BLE001 - it validates with assert, and a bad option can fail anywhere after
            raise ValueError(f"reasoning-gym's {self.dataset} refuses these options: {e or type(e).__name__}") from None


class Answer(str):
    """A dataset item's answer, carrying its item: score_answer reads the item (its metadata, for
    datasets with more than one right answer), and an answer is all check_answer is handed."""

    entry: dict[str, Any]

    def __new__(cls, entry: dict[str, Any]) -> "Answer":
        self = super().__new__(cls, entry["answer"])
        self.entry = entry
        return self

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        return Answer, (self.entry,)  # str's own would rebuild it from the text alone


class RGTask(Task):
    """A reasoning-gym dataset's items as problems: questions as prompts, answers as targets.
    task_class makes one subclass per dataset, named rg:NAME, with its Config."""

    description: ClassVar[str] = "a reasoning-gym dataset (pip install 'workbench[rg]')"
    Config: ClassVar[type[TaskConfig]] = RGConfig
    key_columns: ClassVar[tuple[str, ...]] = ("key",)

    def __init__(self, config: RGConfig | None = None):
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}")
        self.dataset = config.make_dataset()
        # before Task.__init__, which builds the vocabulary from chars
        self.alphabet, self.longest = probe(self.dataset)
        self.alphabet_set = frozenset(self.alphabet)
        super().__init__(config)
        self.buckets = self.default_by = config.bucket_keys()

    @property
    def chars(self) -> str:
        return self.alphabet

    def max_length(self, splits: typing.Sequence[str] = ("train",)) -> int:
        return self.longest  # exact: sample never draws a longer item

    def fits(self, item: dict[str, Any]) -> bool:
        """Whether an item is one this task draws: a text answer, every character in the
        vocabulary, no longer than the longest probed item."""
        text = _text(item)
        return text is not None and len(text) + 1 <= self.longest and self.alphabet_set.issuperset(text)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        rows: list[dict[str, Any]] = []
        for _ in range(100):
            rows += [it for i in rng.integers(0, self.config.items, size=n - len(rows)).tolist()
                     if self.fits(it := self.dataset[i])]
            if len(rows) == n:
                return self.from_items(rows)
        raise RuntimeError(f"task {self.name!r}: its items rarely fit the vocabulary of the first {PROBE}")

    def from_items(self, items: list[dict[str, Any]]) -> Problems:
        questions = [it["question"] for it in items]
        entries = np.empty(len(items), dtype=object)
        entries[:] = items
        cols = {"key": question_keys(questions), "question": np.array(questions, dtype=object), "entry": entries}
        for b in self.buckets:
            cols[b] = bucket_column([it["metadata"].get(b) for it in items])
        return Problems(**cols)

    def render(self, p: Problems) -> Rendered:
        return render_strings([q + SEP for q in p["question"]], [e["answer"] for e in p["entry"]])

    def solve(self, p: Problems) -> list[Answer]:
        return [Answer(e) for e in p["entry"]]

    def parse_answer(self, text: str) -> str:
        return text  # free text: what the completion says is the answer; score_answer judges it

    def check_answer(self, completion: str, expected: Any, prompt: str = "") -> dict[str, Any]:
        """Correct when reasoning-gym's score_answer gives the completion 1.0."""
        entry = expected.entry if isinstance(expected, Answer) else \
            {"question": prompt.removesuffix(SEP), "answer": str(expected), "metadata": {}}
        try:
            score = self.dataset.score_answer(completion, entry)
        except Exception:  # noqa: BLE001 - a scorer choking on a model's text is a wrong answer, not a crash
            score = 0.0
        return {"correct": score == 1.0}

    def first_error(self, prompt: str, completion: str, expected: Any) -> Fault | None:
        if self.check_answer(completion, expected, prompt)["correct"]:
            return None
        return Fault(1, "answer", "reasoning-gym's score_answer gives it less than 1")


def _text(item: dict[str, Any]) -> str | None:
    """An item as the task writes it, question + SEP + answer; None for one it cannot write."""
    q, a = item.get("question"), item.get("answer")
    if not (isinstance(q, str) and isinstance(a, str)):
        return None
    text = q + SEP + a
    return None if END in text or "\x00" in text else text  # "\x00" is a rendered row's padding


def probe(dataset: Any) -> tuple[str, int]:
    """(the vocabulary's characters, the longest sequence + END) of the dataset's first PROBE items."""
    texts = [t for i in range(PROBE) if (t := _text(dataset[i])) is not None]
    if not texts:
        raise ValueError(f"none of the first {PROBE} items of this dataset has a text answer without {END!r}")
    return "".join(sorted(set("".join(texts)) | {SEP})), max(map(len, texts)) + 1


def question_keys(questions: list[str]) -> np.ndarray:
    """One int64 per question, from its text: the held-out hash's key (blake2b, not Python's
    hash(), which changes between processes)."""
    return np.array([int.from_bytes(hashlib.blake2b(q.encode("utf-8"), digest_size=8).digest(), "little",
                                    signed=True) for q in questions], dtype=np.int64)


def bucket_column(values: list[Any]) -> np.ndarray:
    """Metadata values as a bucket column: numbers when all are, else their str() (tables sort both)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values)
    return np.array([str(v) for v in values], dtype=object)


# ---- a task class per dataset ------------------------------------------------------------------

_CLASSES: dict[str, type[RGTask]] = {}


def task_class(dataset: str) -> type[RGTask]:
    """The task class of reasoning-gym's dataset `dataset` (made once), named rg:DATASET."""
    if dataset not in DATASETS:
        close = difflib.get_close_matches(dataset, list(DATASETS), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(PREFIX + c for c in close)}?" if close else \
            "reasoning_gym.factory.DATASETS lists them"
        raise ValueError(f"reasoning-gym has no dataset {dataset!r}; {hint}")
    if dataset not in _CLASSES:
        _CLASSES[dataset] = type(f"RG_{dataset}", (RGTask,), {
            "name": PREFIX + dataset, "Config": config_class(dataset), "__module__": __name__,
            "description": f"reasoning-gym's {dataset} (options: its own, as rg_KEY)"})
    return _CLASSES[dataset]


def config_class(dataset: str) -> type[RGConfig]:
    """RGConfig with the dataset's options as rg_KEY fields: their defaults, and a type --set
    converts (Literal words as str, every other non-scalar type as JSON text)."""
    rg_config = DATASETS[dataset][1]
    hints = typing.get_type_hints(rg_config)
    specs, as_json, choices = [], set(), {}
    for f in dataclasses.fields(rg_config):
        default = ITEMS if f.name == "size" else _default(f)
        if f.name == "seed" or not f.init or default is dataclasses.MISSING:
            continue
        name, typ = f"rg_{f.name}", hints.get(f.name)
        words = typing.get_args(typ) if typing.get_origin(typ) is typing.Literal else ()
        if words and all(isinstance(w, str) for w in words):
            choices[name], typ = words, str
        if not (typ in SCALARS and isinstance(default, typ if typ is not float else (int, float))):
            try:
                default, typ = json.dumps(default), str
            except TypeError:  # a default with no JSON form: not settable, the dataset keeps it
                continue
            as_json.add(name)
        specs.append((name, typ, dataclasses.field(default=default if typ is str else typ(default))))
    return dataclasses.make_dataclass(
        f"RG_{dataset}_Config", specs, bases=(RGConfig,), frozen=True,
        namespace={"__module__": __name__, "dataset": dataset, "as_json": frozenset(as_json), "choices": choices})


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING
