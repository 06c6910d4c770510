"""Experiments: the run library that wires tasks/ to gpt/, and the `workbench` CLI on top.

    from experiments import load_run
    run = load_run("runs/addition-...")
    run.task.parse_answer(run.complete([run.task.prompt(123, 45)])[0])  # 168
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.load import Run, load_run

__all__ = ["Run", "load_run"]


def __getattr__(name: str) -> Any:
    """`load_run` and `Run` come from experiments.load, which imports torch: loaded on first use,
    so that `workbench --help` and every light module of the package start without it."""
    if name in __all__:
        return getattr(importlib.import_module("experiments.load"), name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")
