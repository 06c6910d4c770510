"""Time one preset's training step on the CPU as it is and with a cheaper-step idea switched on.

The step is the trainer's: forward and backward over the batch's length chunks, gradient
clipping, fused AdamW. 10 warm-up steps, then the median of 30. What `workbench bench` does not
offer, this script switches on:

    --compile        torch.compile(model, dynamic=True) (the chunks' widths vary every step)
    --compile-mode M with --compile: torch.compile's mode (max-autotune, ...); --static: dynamic=False
    --bf16           torch.autocast("cpu", bfloat16) around the forward
    --sdpa-fp32      with --bf16: attention in fp32 (its bf16 backward is slow on CPU)
    --round N        pad each chunk to a multiple of N columns (fewer distinct matmul shapes)
    --pack           the step as train.pack=true takes it (rows packed end to end; on where the preset packs)
    --pack-width W   with --pack: packed rows of W columns (0: the batch's width)
    --profile        print torch.profiler's table of 10 more steps
    --matmul         also time a lone matmul of the model's shapes in fp32 and bf16

Figures and what they mean: docs/benchmarks.md ("the reference machine was a fast session").
    python benchmarks/cpu_step.py --preset calc3 [--compile | --bf16 --sdpa-fp32 --round 32]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from experiments.batches import make_batch_fn
from experiments.build import build, position_ids
from experiments.errors import UserError
from experiments.runspec import resolve_spec
from gpt.model import GPT
from gpt.packing import batch_parts, row_lengths
from gpt.train import make_optimizer


def _ms(fn: Callable[[], object], n: int = 100) -> float:
    for _ in range(10):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def matmuls(m: int, k: int, n: int) -> None:
    """A linear layer's three matmuls (forward, input grad, weight grad) alone, fp32 then bf16."""
    for dt in (torch.float32, torch.bfloat16):
        x, w, g = torch.randn(m, k, dtype=dt), torch.randn(n, k, dtype=dt), torch.randn(m, n, dtype=dt)
        times = [_ms(lambda: x @ w.t()), _ms(lambda: g @ w), _ms(lambda: g.t() @ x)]  # forward, dX, dW
        print(f"matmul {m}x{k}x{n} {str(dt):15s} forward / dX / dW: " + " / ".join(f"{t:.3f}" for t in times) + " ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="calculator")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-mode", default=None)
    ap.add_argument("--static", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--sdpa-fp32", action="store_true")
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--pack", action="store_true")
    ap.add_argument("--pack-width", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--matmul", action="store_true")
    a = ap.parse_args()
    if a.sdpa_fp32 and not a.bf16:
        ap.error("--sdpa-fp32 only means something with --bf16")
    if (a.compile_mode or a.static) and not a.compile:
        ap.error("--compile-mode and --static only mean something with --compile")

    spec = resolve_spec(a.task, a.preset, a.sets, seed=1337)
    built = build(spec)
    cfg, tr = built.model, spec.train
    packed = a.pack or tr.pack
    # the step as the trainer takes it, packed where --pack or the preset asks
    step_cfg = (dataclasses.replace(tr, pack=True, pack_width=a.pack_width or tr.pack_width, length_chunks=1)
                if packed else tr)
    if tr.grad_accum > 1 or tr.curriculum != "off":
        ap.error("this step is one micro-batch of the task as configured: no grad_accum, no curriculum")
    ids = position_ids(cfg)
    if a.round and ids is not None:
        ap.error("--round pads token columns only; this model also takes position ids")
    torch.manual_seed(1337)
    model = GPT(cfg)
    opt = make_optimizer(model, tr)
    fwd = torch.compile(model, dynamic=not a.static, mode=a.compile_mode) if a.compile else model
    batch = make_batch_fn(built.task, spec.seed, tr.batch_size, cfg.block_size, torch.device("cpu"), ids=ids)
    if a.sdpa_fp32:
        sdpa = F.scaled_dot_product_attention

        def sdpa_fp32(q, k, v, *args, **kw):
            mask = kw.get("attn_mask")
            if mask is not None and mask.is_floating_point():  # model.pos=coupled_rel's bias
                kw["attn_mask"] = mask.float()
            with torch.autocast("cpu", enabled=False):
                return sdpa(q.float(), k.float(), v.float(), *args, **kw)

        F.scaled_dot_product_attention = sdpa_fp32  # gpt/model.py calls it through F

    def padded(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = x.size(1)
        to = min(-(-w // a.round) * a.round, cfg.block_size) if a.round else w
        return (x, y) if to == w else (F.pad(x, (0, to - w)), F.pad(y, (0, to - w), value=-1))

    def step(i: int) -> tuple[int, int, int]:
        """One training step; returns the batch's width, its rows' real tokens (up to each
        row's last target) and the tokens the chunks computed on, padding included."""
        x, y = batch("train", i, 0)
        real = int(row_lengths(y).sum())
        computed = 0
        for xc, yc, share, seg in batch_parts(x, y, step_cfg):
            xc, yc = padded(xc, yc)
            computed += yc.numel()
            with torch.autocast("cpu", dtype=torch.bfloat16) if a.bf16 else contextlib.nullcontext():
                _, loss = fwd(xc, yc, segments=seg)
            (loss * share).backward()
        if tr.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return x.size(1), real, computed

    t = time.perf_counter()
    for i in range(10):
        step(i)
    warm = time.perf_counter() - t
    times, shapes = [], []
    for i in range(10, 40):
        t = time.perf_counter()
        shapes.append(step(i))
        times.append(1000 * (time.perf_counter() - t))
    widths, real, computed = (statistics.mean(col) for col in zip(*shapes))
    print(f"{a.task} / {a.preset or 'default'}: median {statistics.median(times):.1f} ms/step over 30 "
          f"(warm-up {warm:.1f} s), batch width {widths:.0f} before chunking")
    # what packing rows end to end could save at most: the padding the chunks still compute on
    how = "packed rows" if packed else f"{tr.length_chunks} chunk(s)"
    print(f"tokens a step: {real:,.0f} real, {computed:,.0f} computed in {how} "
          f"({computed / real:.2f}x)")
    if a.profile:
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for i in range(40, 50):
                step(i)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if a.matmul:
        # a chunk's rows times the mean untrimmed batch width: about the largest chunk's tokens
        matmuls(int(tr.batch_size // tr.length_chunks * widths), cfg.n_embd, 3 * cfg.n_embd)


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a bad task, preset or --set: one line, exit 2, as the CLI does
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
