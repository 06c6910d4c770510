"""`workbench ask RUN PROMPT`: one problem, the model's completion, and what is wrong with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import UserError
from experiments.load import load_run


@dataclass
class Answer:
    prompt: str
    completion: str
    parsed: object = None
    expected: object = None  # None when the task cannot read its prompts
    correct: bool | None = None
    trace_errors: list[str] = field(default_factory=list)
    has_trace: bool = False


def ask(run_path: Path, prompts: list[str], device: str = "auto", checkpoint: str = "ckpt.pt",
        tokens: int = 200, trust_code: bool = False) -> list[Answer]:
    """The run's completion of each prompt, scored against the task's own answer where the task
    can read its prompts (problems_from_prompts).  A task without an end token (a text corpus)
    is continued for `tokens` characters instead."""
    run = load_run(run_path, device=device, checkpoint=checkpoint, trust_code=trust_code)
    task = run.task
    if task.end_id is None:
        return [Answer(p, c) for p, c in zip(prompts, run.complete([p or "\n" for p in prompts], tokens))]
    try:
        problems = task.problems_from_prompts(prompts)
    except NotImplementedError:
        problems = None
    except (ValueError, OverflowError) as e:  # malformed expression, division by zero, a number past int64
        raise UserError(f"cannot ask {task.name!r} that: {e}") from None
    if problems is not None:  # the task's own rendering of the prompt (adds '=', pads, ...)
        rendered = task.render(problems)
        prompts = [rendered.prompt(i) for i in range(len(prompts))]
        expected = task.solve(problems)
    block = run.model.config.block_size
    for p in prompts:
        if len(p) >= block:
            raise UserError(f"prompt {p!r} has {len(p)} characters; run {run_path} has block_size {block}")
    out = []
    for i, (p, c) in enumerate(zip(prompts, run.complete(prompts, max_new_tokens=block))):
        a = Answer(p, c, task.parse_answer(c))
        if problems is not None:
            a.expected = expected[i]
            a.correct = a.parsed == a.expected
            a.trace_errors = task.trace_errors(p, c)
            a.has_trace = task.has_trace
        out.append(a)
    return out


def format_answer(a: Answer) -> str:
    lines = [f"prompt      {a.prompt}", f"completion  {a.completion}"]
    if a.expected is None and a.parsed is None and a.correct is None:
        return "\n".join(lines)
    lines.append(f"answer      {a.parsed if a.parsed is not None else '(does not parse)'}")
    if a.expected is not None:
        lines.append(f"expected    {a.expected}   {'correct' if a.correct else 'WRONG'}")
        if a.trace_errors:
            lines += ["trace       wrong:"] + [f"  - {e}" for e in a.trace_errors]
        elif a.has_trace:
            lines.append("trace       every step checks out")
    return "\n".join(lines)
