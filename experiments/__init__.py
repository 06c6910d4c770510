"""Experiments: the CLI, runs, evaluation and result tables; wires tasks/ to gpt/.

    from experiments import load_run
    run = load_run("runs/addition-...")
    run.task.parse_answer(run.complete([run.task.prompt(123, 45)])[0])  # 168
"""

from experiments.runs import Run, load_run

__all__ = ["Run", "load_run"]
