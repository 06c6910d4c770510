"""`workbench export`: a task's problems as a dataset file, a run as a model folder for the Hub.

export task -> FILE.jsonl or FILE.parquet, one row per problem (see ROW_SCHEMA below):
    prompt      the rendered prompt, e.g. "12+34="
    completion  what the model is trained to write after it (chain of thought, then the answer),
                without the END token "$": prompt + completion + "$" is exactly the sequence
                `workbench train` trains on.  A Hugging Face trainer appends its own EOS token.
    answer      str(task.solve(...)), the reference answer: a string for every task, so that one
                column type fits them all (parse it back with json.loads or int where needed)
    <buckets>   the task's bucket columns (ints or strings), as `workbench eval --by` groups them

  The rows are task.eval_problems(seed, split, n) in chunks of ROW_CHUNK: a pure function of
  (task options, split, n, seed), and for --split test the very problems `workbench eval
  --n N --seed S` scores.  train never holds a test problem (the task's held-out hash), so train
  and test files are disjoint.  Each chunk is written before the next is drawn: constant memory.
  With task.train_size=K the train split is the fixed pool a run with --seed S trains on.

export run -> DIR/, in the format experiments/modelfolder.py defines (and load_run reads):
    model.safetensors   the weights (tied lm_head/wte stored once; metadata: step, checkpoint meta)
    config.json         the run's own config.json, plus an "export" record: load_run(DIR) reads it
    vocab.json          {character: token id}, in id order
    README.md           a model card (written here): Hub front matter, task, preset, steps, model shape, eval table
  The folder is built beside DIR and renamed into place, so a failed export leaves nothing.
  Its layout is what huggingface_hub.upload_folder(folder_path=DIR, ...) uploads as is.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from experiments.display import format_eval
from experiments.errors import UserError, optional_module
from experiments.eval_runs import EvalTable
from experiments.evaluate import EVAL_SEED, evaluate, evaluate_loss
from experiments.load import Run, load_run
from experiments.modelfolder import (CARD, EXPORT_KEY, VOCAB, WEIGHTS, export_section, vocab_json, weights_metadata,
                                     write_weights)
from experiments.trust import seal
from experiments.outputs import atomic_text_file, check_name, output_target, refuse_protected
from experiments.rundir import CONFIG, RUN_FORMAT, copy_includes, training_pid
from experiments.runspec import to_jsonable
from gpt.atomic import atomic_open, atomic_write_text
from tasks.base import Problems, Task
from tasks.encode import END, Rendered

# eval_problems' chunk: changing it changes which problems (n, seed) gives, so it is fixed here
ROW_CHUNK = 10_000
FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}
FIXED_COLUMNS = ("prompt", "completion", "answer")
# ensure_ascii=False: UTF-8 as is (modular's symbol tokens), which every JSON reader takes; one
# encoder for every row, as json.dumps would build one per call
_JSON = json.JSONEncoder(ensure_ascii=False)


@dataclass(frozen=True)
class TaskExport:
    """What `export task` wrote."""

    path: Path
    format: str  # "jsonl" or "parquet"
    rows: int
    columns: tuple[str, ...]
    seconds: float  # wall time of drawing and writing the rows


# ---- export task ----------------------------------------------------------------------------------

def table_format(out: Path) -> str:
    """The file format --out names by its suffix."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise UserError(f"--out {out}: give a file ending in .jsonl or .parquet")
    return fmt


def check_exportable(task: Task | type[Task]) -> tuple[str, ...]:
    """The columns of the task's rows; a task without problems (a text corpus) has none to export.

    A task class will do (metric and buckets are class attributes): the CLI asks before it
    builds the task, which for a text task means loading its corpus."""
    if task.metric != "accuracy":
        raise UserError(f"task {task.name!r} is a text corpus (metric {task.metric!r}): it has no problems "
                        "to export; its data is the text file itself")
    clash = [b for b in task.buckets if b in FIXED_COLUMNS]
    if clash:  # a bucket column would silently overwrite a row field
        raise UserError(f"task {task.name!r} has a bucket column named {clash[0]!r}, which export task uses itself")
    return (*FIXED_COLUMNS, *task.buckets)


def problem_chunks(task: Task, split: str, n: int, seed: int, chunk: int = ROW_CHUNK) -> Iterator[Problems]:
    """n problems of a split, a chunk at a time, a pure function of (task config, split, n, seed).

    A task with a finite training pool (task.train_size) trains on that pool only: its train
    split is the pool (the one a run with this seed trains on), n at most its size.  Not a
    generator itself: a bad split or n is refused now, before any output file is opened."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    try:
        task.check_split(split)
    except ValueError as e:
        raise UserError(str(e)) from None
    if split == "train" and task.train_size:
        if n > task.train_size:
            raise UserError(f"task.train_size={task.train_size} fixes the training set at that many problems; "
                            f"--n must be at most {task.train_size}")
        try:
            pool = task.train_pool(seed)
        except ValueError as e:
            raise UserError(f"{e}; lower task.train_size") from None
        return (pool.take(np.arange(start, min(start + chunk, n))) for start in range(0, n, chunk))
    return task.eval_problems(seed, split, n, chunk)


def _strings(chars: np.ndarray, start: np.ndarray, stop: np.ndarray) -> list[str]:
    """Row i's characters start[i]:stop[i] as a str, for all rows at once.

    Codepoints are gathered into a uint32 matrix and read as fixed-width numpy strings (NUL
    padded, and numpy drops trailing NULs): no Python loop over characters, which made
    Rendered.prompt(i) per row the slowest part of an export."""
    width = max(int((stop - start).max(initial=0)), 1)
    cols = start[:, None] + np.arange(width)[None, :]
    inside = cols < stop[:, None]
    picked = np.take_along_axis(chars, np.minimum(cols, chars.shape[1] - 1), axis=1)
    codes = np.ascontiguousarray(np.where(inside, picked, 0), dtype="<u4")
    return codes.view(f"<U{width}").ravel().tolist()


def rendered_columns(r: Rendered) -> tuple[list[str], list[str]]:
    """Prompts and targets (END dropped) of rendered problems: Rendered.prompt(i) and .target(i)."""
    zero = np.zeros(len(r), dtype=np.int64)
    return _strings(r.chars, zero, r.prompt_len), _strings(r.chars, r.prompt_len, r.length - 1)


def _plain_list(column: np.ndarray) -> list:
    """A bucket column as plain Python values (int, float, str, bool), which JSON and Arrow take."""
    column = np.asarray(column)
    values = column.tolist()
    if column.dtype.kind in "biufU":  # tolist already gave bool, int, float or str
        return values
    return [v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for v in values]


def chunk_columns(task: Task, problems: Problems) -> dict[str, list]:
    """One chunk's rows, column by column: prompt, completion, answer, then the bucket columns."""
    prompts, completions = rendered_columns(task.render(problems))
    cols: dict[str, list] = {"prompt": prompts, "completion": completions,
                             "answer": [str(a) for a in task.solve(problems)]}  # str: as eval's "expected"
    for b in task.buckets:
        cols[b] = _plain_list(problems[b])
    return cols


def task_columns(task: Task, split: str, n: int, seed: int, chunk: int = ROW_CHUNK) -> Iterator[dict[str, list]]:
    """The export's rows, one chunk (a dict of equal-length columns) at a time; drawn lazily, so
    only one chunk is ever held.  Bad arguments are refused at the call, not at the first chunk."""
    check_exportable(task)
    return (chunk_columns(task, problems) for problems in problem_chunks(task, split, n, seed, chunk))


def dataset_metadata(task: Task, split: str, n: int, seed: int, preset: str = "") -> dict[str, Any]:
    """What made the rows: enough to export them again (a parquet file carries it in its schema)."""
    return {"task": task.name, "task_config": to_jsonable(task.config), "preset": preset, "split": split,
            "n": n, "seed": seed, "end_token": END, "completion_has_end_token": False}


@contextlib.contextmanager
def binary_output(path: Path) -> Iterator[IO[bytes]]:
    """A binary file streamed to a temp file beside path and renamed over it once complete
    (outputs.atomic_text_file, for bytes); /dev/stdout or a named pipe is written in place.
    A failed export leaves the old file, or none, never a truncated one."""
    target, atomic = output_target(Path(path))
    if not atomic:
        with open(target, "wb") as f:
            yield f
        return
    with atomic_open(target, "wb") as f:
        yield f


def write_jsonl(chunks: Iterable[dict[str, list]], out: Path) -> int:
    """One JSON object per line, written chunk by chunk; returns the row count."""
    rows = 0
    with atomic_text_file(out) as f:
        for cols in chunks:
            names = list(cols)
            lines = [_JSON.encode(dict(zip(names, values))) for values in zip(*cols.values())]
            if lines:
                f.write("\n".join(lines) + "\n")
            rows += len(lines)
    return rows


def write_parquet(chunks: Iterable[dict[str, list]], out: Path, metadata: dict[str, Any]) -> int:
    """One row group per chunk; the schema is the first chunk's, so every chunk has one type per
    column; metadata goes in the schema under b"workbench".  Returns the row count."""
    pa = optional_module("pyarrow", "export", "export task --out FILE.parquet")
    pq = optional_module("pyarrow.parquet", "export", "export task --out FILE.parquet")
    rows, writer = 0, None
    with binary_output(out) as f:
        try:
            for cols in chunks:
                if writer is None:
                    table = pa.table(cols)
                    writer = pq.ParquetWriter(f, table.schema.with_metadata({"workbench": json.dumps(metadata)}))
                else:  # the first chunk's types: a column whose values happen to differ fails loudly
                    table = pa.table(cols, schema=writer.schema)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
    return rows


def export_task(task: Task, out: Path, split: str = "train", n: int = 10_000, seed: int = 0, preset: str = "",
                chunk: int = ROW_CHUNK) -> TaskExport:
    """Write n problems of a split to out (.jsonl or .parquet), streamed a chunk at a time."""
    fmt = table_format(out)
    columns = check_exportable(task)
    start = time.perf_counter()
    chunks = task_columns(task, split, n, seed, chunk)  # refuses a bad split or n before out is opened
    if fmt == "parquet":
        rows = write_parquet(chunks, out, dataset_metadata(task, split, n, seed, preset))
    else:
        rows = write_jsonl(chunks, out)
    return TaskExport(Path(out), fmt, rows, columns, time.perf_counter() - start)


# ---- export run -----------------------------------------------------------------------------------

def check_out_dir(out: Path) -> None:
    """Refuse an --out that holds anything, or whose folder does not exist: export never mixes
    its files with others, and never overwrites a folder.  Nor does it write inside a run or
    another exported folder, or over the current folder (or one above it)."""
    out = Path(out)
    check_name(out, "--out")
    here = Path.cwd().resolve()
    if out.exists() and (out.resolve() == here or out.resolve() in here.parents):
        raise UserError(f"--out {out} is the current folder or holds it; give a new folder's name")
    refuse_protected(out.absolute().parent / ".", "--out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a new (or empty) folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; give a new (or empty) folder")
    if not out.absolute().parent.is_dir():
        raise UserError(f"--out {out}: folder {out.absolute().parent} does not exist")


def export_record(run: Run, checkpoint: str, copies: dict[str, str]) -> dict[str, Any]:
    """config.json for the folder: the run's own record (so read_run_spec and load_run read it),
    its task files as the folder's own copies (sealed as made here: the run was loaded, so its
    code was trusted), plus where the weights came from (modelfolder.export_section)."""
    task = {**run.config["task"], "include": list(copies), "include_sha256": copies,
            "include_seal": seal(run.task.name, copies) if copies else None}
    return {**run.config, "format": RUN_FORMAT, "task": task,
            EXPORT_KEY: export_section(run.path, checkpoint, run.step, _end_token(run.task))}


def _end_token(task: Task) -> str | None:
    return None if task.end_id is None else task.vocab.chars[task.end_id]


def eval_markdown(run: Run, n: int, batch_size: int = 1024) -> str:
    """The card's eval table: accuracy by the task's default buckets on n held-out test problems
    (eval seed 0, as `workbench eval --n N`), or the loss on n validation windows of a text run."""
    task = run.task
    if task.metric == "accuracy":
        by = list(task.default_by)
        table = evaluate(run.model, task, split="test", n=n, by=by, batch_size=batch_size, seed=EVAL_SEED)
    else:
        by = []
        table = evaluate_loss(run.model, task, split="val", n=n, seed=EVAL_SEED)
    table.insert(0, "run", run.path.name)
    return format_eval(EvalTable(table, by, task.metric), "markdown")


def _shape(cfg: Any) -> str:
    """The model config's shape, by the names --set model.KEY=V uses."""
    keys = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "pos", "norm", "mlp", "tie_weights")
    return ", ".join(f"{k} {getattr(cfg, k)}" for k in keys)


def _example(task: Task) -> tuple[str, str] | None:
    """One test problem's prompt and completion, for the card's usage snippet."""
    if task.metric != "accuracy":
        return None
    first = next(iter(task.eval_problems(EVAL_SEED, "test", 1)))
    prompts, completions = rendered_columns(task.render(first))
    return prompts[0], completions[0]


def model_card(run: Run, folder_name: str, eval_table: str | None, eval_n: int) -> str:
    """README.md: YAML front matter the Hub reads (library, tags), then what the model is and how it scores."""
    spec = run.spec
    task, cfg = run.task, run.model.config
    tags = ["workbench", "character-level", "gpt", "synthetic-tasks", task.name]
    front = "\n".join(["---", "library_name: workbench", "pipeline_tag: text-generation", "tags:",
                       *[f"- {t}" for t in tags], "---"])
    options = json.dumps(to_jsonable(task.config))
    planned = spec.train.steps if spec is not None else None
    steps = f"{run.step:,}" + (f" (of {planned:,} planned)" if planned and planned != run.step else "")
    lines = [
        front, "", f"# {folder_name}", "",
        f"A character-level GPT trained from scratch by workbench on the `{task.name}` task: "
        f"{task.description.rstrip('.')}.", "",
        "| | |", "|---|---|",
        f"| task | `{task.name}` |",
        f"| task options | `{options}` |",
        f"| preset | `{(spec.preset if spec is not None else '') or '-'}` |",
        f"| training steps | {steps} |",
        f"| seed | {spec.seed if spec is not None else '-'} |",
        f"| model | {_shape(cfg)} |",
        f"| parameters | {run.model.num_params(non_embedding=False):,} |", "",
    ]
    if eval_table is not None:
        what = (f"Exact-match accuracy on {eval_n:,} held-out test problems (eval seed {EVAL_SEED}), with 95% "
                "Wilson intervals" if task.metric == "accuracy"
                else f"Mean next-character loss on {eval_n:,} validation windows")
        lines += ["## Evaluation", "", what + ":", "", eval_table]
    example = _example(task)
    ask = (f"run.complete([{example[0]!r}])  # the expected completion: {example[1]!r}" if example
           else 'run.complete(["\\n"], max_new_tokens=200)')
    lines += [
        "## Use", "",
        "The weights are in `model.safetensors`; `config.json` is the run's own record and `vocab.json` maps "
        f"each character to its token id.{_end_note(task)}", "",
        "```python", "from experiments import load_run  # pip install workbench", "",
        f"run = load_run({folder_name!r})", ask, "```", "",
        f"`workbench eval {shlex.quote(folder_name)}` scores it again; `workbench ask {shlex.quote(folder_name)} PROMPT` "
        "answers one prompt.", "",
    ]
    return "\n".join(lines)


def _end_note(task: Task) -> str:
    end = _end_token(task)
    return f" Every completion ends with the token `{end}`, where decoding stops." if end else ""


def _sync_folder(folder: Path) -> None:
    """fsync every file and the folder itself, so the rename publishes complete files."""
    for p in folder.iterdir():
        if not p.is_file():  # tasks/: its files were written (and fsynced) by the atomic writer
            continue
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_run(run_path: Path, out: Path, checkpoint: str = "ckpt.pt", eval_n: int = 1000,
               device: str = "auto", batch_size: int = 1024, trust_code: bool = False) -> Run:
    """Write the run's model folder to out (see the module docstring); eval_n=0 leaves out the
    eval table.  Returns the run as loaded."""
    out = Path(out)
    check_out_dir(out)
    pid = training_pid(run_path)
    if pid is not None:
        raise UserError(f"{run_path} is still training (pid {pid or 'unknown'}): its checkpoint changes as you export "
                        "it; export it when it has finished")
    run = load_run(run_path, device=device, checkpoint=checkpoint, trust_code=trust_code)
    table = eval_markdown(run, eval_n, batch_size) if eval_n > 0 else None
    # os.mkdir, not mkdtemp (0700): the published folder gets the usual mode, umask applied;
    # a short name, so that it fits wherever --out's own name just fits
    tmp = out.absolute().parent / f".wb-export.{secrets.token_hex(6)}.tmp"
    os.mkdir(tmp)
    try:
        write_weights(run.model, tmp / WEIGHTS,
                      weights_metadata(run.step, run.task.name, run.task.vocab.chars, run.model.config))
        copies = copy_includes(tmp, run.spec.include if run.spec is not None else ())
        atomic_write_text(tmp / CONFIG, json.dumps(export_record(run, checkpoint, copies), indent=2) + "\n")
        atomic_write_text(tmp / VOCAB, vocab_json(run.task.vocab.chars))
        atomic_write_text(tmp / CARD, model_card(run, out.absolute().name, table, eval_n))
        _sync_folder(tmp)
        try:
            os.replace(tmp, out)  # an empty folder at out is replaced; one that filled meanwhile is not
        except OSError as e:
            raise UserError(f"cannot write --out {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run
