"""The framework tax: a step of `workbench train` against a bare PyTorch loop with the same model,
batches and optimizer (issue 47; figures in docs/benchmarks.md, "The framework tax").

    python benchmarks/bare_loop.py --task addition [--preset add10-tiny] [--steps 300] [--pairs 3]

The bare loop builds the preset's model and fused AdamW as the trainer does, takes the preset's own
batches (packed or chunked as the preset says) made before the clock starts, and runs forward,
backward, clipping and the update: the median ms/step after 20 warm-up steps. `workbench train`
runs the same preset for the same steps in a fresh process, evals only at the start and the end,
and its metrics.jsonl gives ms/step between log records, everything but evals included (batch
building, logging, progress, checks). The two alternate, `--pairs` times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from experiments.batches import make_batch_fn
from experiments.build import build, position_ids
from experiments.runspec import resolve_spec
from gpt.model import GPT
from gpt.packing import batch_parts
from gpt.train import make_optimizer


def bare(task: str, preset: str | None, steps: int) -> dict[str, float]:
    """Median ms of the bare step and of its phases: the batch (made and cut into parts before the
    clock, timed apart), forward, backward, and clipping with the update."""
    spec = resolve_spec(task, preset, [], seed=1337)
    built, tr = build(spec), spec.train
    if tr.grad_accum > 1 or tr.curriculum != "off":
        sys.exit("bare_loop times one micro-batch of the task as configured: no grad_accum, no curriculum")
    torch.manual_seed(1337)
    model = GPT(built.model)
    fwd = torch.compile(model) if tr.compile == "on" else model  # as the trainer does on a CPU
    opt = make_optimizer(model, tr)
    batch = make_batch_fn(built.task, spec.seed, tr.batch_size, built.model.block_size, torch.device("cpu"),
                          ids=position_ids(built.model))
    parts, phases = [], {k: [] for k in ("step", "batch", "forward", "backward", "update")}
    for i in range(steps):  # the data, made before the clock
        t = time.perf_counter()
        parts.append(batch_parts(*batch("train", i, 0), tr))
        phases["batch"].append(time.perf_counter() - t)
    for step_parts in parts:
        t0 = time.perf_counter()
        fw = bw = 0.0
        for x, y, share, segments in step_parts:
            t = time.perf_counter()
            _, loss = fwd(x, y, segments=segments)
            t1 = time.perf_counter()
            (loss * share).backward()
            fw, bw = fw + t1 - t, bw + time.perf_counter() - t1
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        end = time.perf_counter()
        for k, v in (("step", end - t0), ("forward", fw), ("backward", bw), ("update", end - t)):
            phases[k].append(v)
    return {k: 1000 * statistics.median(v[20:]) for k, v in phases.items()}


def workbench(task: str, preset: str | None, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--task", task, *(["--preset", preset] if preset else []), "--steps", str(steps), "-q",
                "--set", f"train.eval_interval={steps}", "--set", "train.target_acc=0", "--out", f"{tmp}/run"]
        subprocess.run([sys.executable, "-m", "experiments", "train", *args], check=True)
        lines = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
        ms = [r["ms_per_step"] for r in map(json.loads, lines) if "ms_per_step" in r]
    return statistics.median(ms[2:])  # the first records hold the warm-up


def arguments(doc: str) -> argparse.Namespace:
    """--task, --preset, --steps, --pairs: what this and benchmarks/prefetch_cpu.py compare on."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--task", default="addition")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=3)
    return ap.parse_args()


def main() -> None:
    a = arguments(__doc__)
    rows = [(bare(a.task, a.preset, a.steps), workbench(a.task, a.preset, a.steps)) for _ in range(a.pairs)]
    for b, w in rows:
        print(f"bare {b['step']:.2f} ms/step (forward {b['forward']:.2f}, backward {b['backward']:.2f}, clip and "
              f"update {b['update']:.2f}; a batch takes {b['batch']:.2f} to make), workbench train {w:.2f} ms/step: "
              f"{w / b['step']:.3f}x")
    ratio = statistics.median(w / b["step"] for b, w in rows)
    print(f"{a.task}/{a.preset or 'default'}: median ratio {ratio:.3f}x over {a.pairs} alternating pairs of "
          f"{a.steps} steps; workbench train {1000 / statistics.median(w for _, w in rows):.1f} steps/s")


if __name__ == "__main__":
    main()
