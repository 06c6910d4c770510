"""The `workbench` commands: which module defines each, and the line `workbench --help` shows.

A command's module is imported only when that command runs, so `workbench --help`, `tasks` and
`presets` start without torch (experiments/cli.py's LazyCommands).  `summary` is the first
paragraph of the command's own help; tests/test_cli.py keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # defines `app`, whose command `name` this is (or, for a group, the group itself)
    summary: str


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("train", "experiments.commands.train",
            'Train a GPT on a task; resumable, with a run directory of config, metrics and checkpoints.'),
    Command("sample", "experiments.commands.runs",
            'Stream sampled text from a run.'),
    Command("eval", "experiments.commands.runs",
            'Exact-match accuracy of runs on held-out problems, by bucket, with 95% Wilson intervals, and the baseline of always giving the most common answer.'),
    Command("ask", "experiments.commands.runs",
            'Ask a run: its completion, the parsed and the true answer, and any wrong trace steps.'),
    Command("check", "experiments.commands.problems",
            'Run the task conformance kit (tasks.testing) on the task config `train` would use; exit 1 if a check fails.'),
    Command("new-task", "experiments.commands.catalog",
            'Write an example task (string reversal) and its test to make yours: it trains as written, and `workbench check` fails until every line marked TODO(new-task) is yours.'),
    Command("bench", "experiments.commands.bench",
            'Benchmark a task and preset: ms/step, tokens/s, MFU, data share, decode problems/s.'),
    Command("show", "experiments.commands.problems",
            "Print sample problems: each input token above its target, masked targets shown as ·; or, given a run, its model and parameter counts."),
    Command("tasks", "experiments.commands.catalog",
            'List tasks: origin, description, options with defaults, splits.'),
    Command("run", "experiments.commands.sweep",
            'Run an experiment spec: every variant x seed (finished ones are skipped), then its report.'),
    Command("report", "experiments.commands.sweep",
            "Rebuild a spec's tables and plots (results.md, results.csv, *.png) from its finished runs."),
    Command("card", "experiments.commands.card",
            "Print the results card, a markdown table generated from committed run records (--check FILE: compare)."),
    Command("presets", "experiments.commands.catalog",
            "List named presets (--all: with those kept only to reproduce docs/LOG.md's figures)."),
    Command("attention", "experiments.commands.runs",
            "Draw every layer x head's attention weights over PROMPT and the run's greedy completion."),
    Command("export", "experiments.commands.export",
            "Export a task's problems as a dataset file, a run as a model folder, or an addition run for AdderBoard."),
]}
