"""Character-level language modelling on a text file (nanoGPT's shakespeare_char).

The first 90% of the characters are train, the last 10% val.  A batch is
batch_size random windows of block_size + 1 characters; x is the window
without its last character, y without its first.  Nothing is masked, and
there are no answers: the task is scored by its loss (metric "loss").

    >>> task = ShakespeareTask()                # finds tiny Shakespeare (see data.py)
    >>> x, y = task.batch(seed=0, split="train", step=0, micro=0, batch_size=2, block_size=8)
    >>> x.shape, y.shape
    ((2, 8), (2, 8))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from tasks.base import BaseTask, Example, TaskConfig
from tasks.data import DataError, find_shakespeare, read_codepoints
from tasks.encode import Vocab

SHOW_BLOCK = 48  # characters per window in `workbench show`


@dataclass(frozen=True)
class TextConfig(TaskConfig):
    path: str = ""  # a UTF-8 text file; .gz, .xz and .bz2 are read as streams
    val_fraction: float = 0.1

    mask_prompt = False  # a text has no prompt: every next character is a target

    def __post_init__(self) -> None:
        if "\x00" in self.path:  # no file system has such a name; say so now, not when it is opened
            raise ValueError(f"task.path contains a NUL character: {self.path!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"task.val_fraction must be in (0, 1), got {self.val_fraction}")


class TextTask(BaseTask):
    """A task without problems (BaseTask): no answers, so no end token (end_id is None), and
    nothing to number for position ids.  Nothing ends a text: continuing it is all there is."""

    name: ClassVar[str] = "text"
    description: ClassVar[str] = "character-level language modelling on any UTF-8 text file"
    Config: ClassVar[type[TaskConfig]] = TextConfig
    splits: ClassVar[tuple[str, ...]] = ("train", "val")
    metric: ClassVar[str] = "loss"

    def make_vocab(self) -> Vocab:
        """The characters present in the file, and no END: a text has no answers to close.

        The vocabulary is the file's, so this is where the file is read."""
        self.path = self.resolve_path()
        cps = read_codepoints(self.path)
        present = np.flatnonzero(np.bincount(cps)) if cps.dtype == np.uint8 else np.unique(cps)
        vocab = Vocab("".join(chr(int(c)) for c in present))
        dtype = np.uint8 if len(vocab) <= 256 else np.int32
        self.data = vocab.ids_of_codepoints(cps).astype(dtype)
        n_train = int(len(self.data) * (1 - self.config.val_fraction))
        self.split_data = {"train": self.data[:n_train], "val": self.data[n_train:]}
        return vocab

    def resolve_path(self) -> Path:
        if not self.config.path:
            raise DataError("task 'text' needs a file: --set task.path=FILE")
        return Path(self.config.path).expanduser()

    def check_block_size(self, block_size: int) -> None:
        """DataError (a ValueError) unless each split holds more than one window of block_size + 1."""
        for split, data in self.split_data.items():
            if len(data) <= block_size + 1:
                raise DataError(
                    f"block_size {block_size} is larger than the {split} split of {self.path} "
                    f"({len(data)} characters); use a smaller model.block_size or more data"
                )

    def batch(self, seed: int, split: str, step: int, micro: int, batch_size: int,
              block_size: int) -> tuple[np.ndarray, np.ndarray]:
        """batch_size windows of block_size + 1 characters at random starts of the split (test
        reads val, the held-out text); x is each window but its last character, y but its first."""
        data = self.split_data["val" if split == "test" else split]
        starts = self.rng(seed, split, step, micro).integers(0, len(data) - block_size - 1, size=batch_size)
        window = data[starts[:, None] + np.arange(block_size + 1)[None, :]].astype(np.int64)
        return window[:, :-1], window[:, 1:]

    def examples(self, seed: int, split: str, n: int) -> list[Example]:
        """n windows of SHOW_BLOCK characters from the split, as step 0 of seed draws them."""
        self.check_split(split)
        x, y = self.batch(seed, split, 0, 0, n, SHOW_BLOCK)
        chars = self.vocab.chars
        return [Example(xs=[chars[i] for i in row_x], ys=[chars[i] for i in row_y]) for row_x, row_y in zip(x, y)]


class ShakespeareTask(TextTask):
    name: ClassVar[str] = "shakespeare"
    description: ClassVar[str] = "tiny Shakespeare, character level (downloaded and cached if needed)"

    def resolve_path(self) -> Path:
        return find_shakespeare(self.config.path)
