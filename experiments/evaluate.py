"""Exact-match evaluation: batched KV-cache greedy decoding, bucketed accuracy, Wilson intervals.

Evaluation sets are fixed by (eval seed, split, n) and streamed in chunks, so a
million problems take constant memory.  Results do not depend on the decode
batch size: rows are grouped by prompt length and each row is decoded on its own
position grid, whatever else shares its batch.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from experiments.build import decode_positions, rendered_positions
from experiments.outputs import atomic_text_file
from experiments.tables import bucket_order
from gpt.generate import greedy_complete, greedy_writes_all
from gpt.model import GPT
from tasks.base import Task
from tasks.encode import END, Rendered

EVAL_SEED = 0


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 and n the bound is exactly 0 (or 1); rounding would leave ~1e-18 there
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return (low, high)


def complete_rendered(model: GPT, task: Task, r: Rendered, batch_size: int = 1024, use_cache: bool = True) -> list[str]:
    """Greedy completions for each rendered problem's prompt (END stripped)."""
    vocab = task.vocab
    w = int(r.prompt_len.max())
    pos = np.arange(w)[None, :]
    ids = vocab.ids_of_codepoints(np.where(pos < r.prompt_len[:, None], r.chars[:, :w], ord(END)))
    max_new = int((r.length - r.prompt_len).max()) + 2  # room for the target, END, and a little overrun
    prompts = [row[:n] for row, n in zip(ids, r.prompt_len)]
    positions, counts = decode_positions(task, model.config, r)
    table = np.array(list(vocab.chars))
    out = greedy_complete(model, prompts, vocab.stoi[END], max_new, batch_size, use_cache, positions, counts)
    return ["".join(table[o]) for o in out]


def answers(model: GPT, task: Task, r: Rendered, batch_size: int = 1024, use_cache: bool = True) -> list[str]:
    """What complete_rendered gives, found faster: the rows that greedy decoding would write exactly
    as their target are found in one forward pass (gpt.generate.greedy_writes), and only the rest
    are decoded.  An eval of a trained model decodes few rows; sums of 11-100 digits score 3.4x
    as fast (docs/benchmarks.md, "Evaluation")."""
    vocab = task.vocab
    past = np.arange(r.chars.shape[1])[None, :] >= r.length[:, None]
    ids = vocab.ids_of_codepoints(np.where(past, ord(END), r.chars))
    right = greedy_writes_all(model, ids, r.prompt_len, r.length, rendered_positions(task, model.config, r))
    got = [r.target(i) if ok else "" for i, ok in enumerate(right)]
    wrong = np.flatnonzero(~right)
    if len(wrong):
        rest = Rendered(r.chars[wrong], r.prompt_len[wrong], r.length[wrong])
        for i, g in zip(wrong, complete_rendered(model, task, rest, batch_size, use_cache)):
            got[i] = g
    return got


class TooLong(ValueError):
    """A problem to score is longer than the model's block: decoding would cut its answer short."""

    def __init__(self, need: int, block_size: int):
        super().__init__(f"a problem needs {need} positions, the model's block_size is {block_size}")
        self.need, self.block_size = need, block_size


def score_chunk(model: GPT, task: Task, problems, batch_size: int, use_cache: bool = True,
                faults: bool = False, whole: bool = False) -> pd.DataFrame:
    """One row per problem: prompt, expected, got, correct (+ task metrics), bucket columns; with
    faults, each completion's first wrong step and its kind (task.fault_buckets).  whole: TooLong
    rather than a problem whose answer the block would cut (a training eval lets a rare one be)."""
    r = task.render(problems)
    need = int(r.length.max(initial=1)) - 1  # as training reads it: x drops the last character
    if whole and need > model.config.block_size:
        raise TooLong(need, model.config.block_size)
    got = answers(model, task, r, batch_size, use_cache)
    expected = task.solve(problems)
    prompts = [r.prompt(i) for i in range(len(r))]
    scores = [task.check_answer(g, e, p) for g, e, p in zip(got, expected, prompts)]
    df = pd.DataFrame({
        "prompt": prompts,
        "expected": [str(e) for e in expected],
        "got": got,
    })
    for key in scores[0] if scores else ["correct"]:
        df[key] = [bool(s[key]) for s in scores]
    for b in task.buckets:
        df[b] = problems[b]
    if faults:
        first = [task.first_error(p, g, e) for g, e, p in zip(got, expected, prompts)]
        step, kind = task.fault_buckets
        # words, not numbers: the columns hold "none" and "?" (a checker that names no step) too
        df[step] = ["none" if f is None else "?" if f.step is None else str(f.step) for f in first]
        df[kind] = ["none" if f is None else f.kind for f in first]
    return df


def accuracy(model: GPT, task: Task, problems, batch_size: int = 1024) -> float:
    was_training = model.training
    model.eval()
    try:
        return float(score_chunk(model, task, problems, batch_size)["correct"].mean())
    finally:
        model.train(was_training)


def evaluate(model: GPT, task: Task, split: str = "test", n: int = 10_000, by: Sequence[str] = (),
             batch_size: int = 1024, seed: int = EVAL_SEED, samples: Path | None = None,
             use_cache: bool = True, whole: bool = False,
             progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Bucketed accuracy table: rows per bucket of `by` plus an 'all' row.

    `by` may name the task's buckets and its fault_buckets (each wrong completion's first wrong
    step and its kind). Its `baseline` column is the accuracy of always giving the set's most common
    answer (found in its first chunk, 10,000 problems, so that a million problems still take
    constant memory): what a model that learned only the answers' distribution scores, bucket by
    bucket.  whole: raise TooLong at a problem the model's block cannot hold (score_chunk).
    progress(done) is called after each chunk of problems is scored."""
    model.eval()
    counts: pd.DataFrame | None = None
    common: str | None = None
    faults = any(b in task.fault_buckets for b in by)
    keys = ("prompt", "expected", "got", *task.buckets, *task.fault_buckets)  # the rest are metrics, summed
    done = 0
    with atomic_text_file(samples) if samples else nullcontext() as sample_file:
        for problems in task.eval_problems(seed, split, n):
            df = score_chunk(model, task, problems, batch_size, use_cache, faults, whole)
            if sample_file:
                for rec in df.to_dict(orient="records"):
                    sample_file.write(json.dumps({k: _plain(v) for k, v in rec.items()}) + "\n")
            if common is None:
                common = Counter(df["expected"]).most_common(1)[0][0] if len(df) else ""
            df["baseline"] = df["expected"] == common
            metrics = [c for c in df.columns if c not in keys]
            part = _counts(df, list(by), metrics)
            counts = part if counts is None else counts.add(part, fill_value=0)
            done += len(problems)
            if progress:
                progress(done)
    assert counts is not None  # n >= 1 is checked by the caller
    return _table(counts.reset_index(), list(by))


@torch.no_grad()
def evaluate_loss(model: GPT, task: Task, split: str = "val", n: int = 1000, batch_size: int = 64,
                  seed: int = EVAL_SEED) -> pd.DataFrame:
    """Mean next-character loss of a text run over n fixed windows of block_size (one row).

    Far steadier than the trainer's eval_iters estimate: a fine-tuning comparison needs it."""
    model.eval()
    device = model.wte.weight.device
    total, count = 0.0, 0
    for i, start in enumerate(range(0, n, batch_size)):
        x, y = task.batch(seed + 7919, split, 1 << 41 | i, 0, min(batch_size, n - start), model.config.block_size)
        _, loss = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        total += float(loss) * x.size
        count += x.size
    mean = total / count
    return pd.DataFrame([{"split": split, "n": n, "tokens": count, "loss": mean, "ppl": math.exp(mean)}])


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _counts(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    df = df.assign(n=1)
    cols = ["n"] + metrics
    allrow = df[cols].sum().to_frame().T
    if not by:
        allrow.index = pd.Index(["all"], name="bucket")
        return allrow.astype("int64")
    grouped = df.groupby(by)[cols].sum()
    for b in by:
        allrow[b] = "all"
    allrow = allrow.set_index(by)
    grouped.index = grouped.index.map(lambda k: tuple(str(x) for x in (k if isinstance(k, tuple) else (k,))))
    if len(by) == 1:
        grouped.index = grouped.index.map(lambda k: k[0])
    grouped.index.names = by
    return pd.concat([grouped, allrow]).astype("int64")


def _table(counts: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    t = counts.copy()
    t["accuracy"] = t["correct"] / t["n"]
    lo_hi = [wilson(int(c), int(n)) for c, n in zip(t["correct"], t["n"])]
    t["ci_low"] = [x[0] for x in lo_hi]
    t["ci_high"] = [x[1] for x in lo_hi]
    for extra in [c for c in counts.columns if c not in ("n", "correct", "bucket", *by)]:
        t[extra] = t[extra] / t["n"]
    if by:
        order = sorted(range(len(t)), key=lambda i: tuple(bucket_order(t[b].iloc[i]) for b in by))
        t = t.iloc[order].reset_index(drop=True)
    return t

