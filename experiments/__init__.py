"""Experiments: the run library that wires tasks/ to gpt/, and the `workbench` CLI on top.

    from experiments import load_run
    run = load_run("runs/addition-...")
    run.task.parse_answer(run.complete([run.task.prompt(123, 45)])[0])  # 168
"""

from experiments.load import Run, load_run

__all__ = ["Run", "load_run"]
