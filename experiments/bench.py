"""`workbench bench`: where the time goes for one task and preset, on this machine.

Measures, with the real training job (training.start_run) on a scratch run directory:
  - ms per optimizer step and tokens/s (median over the timed steps);
  - model FLOPs utilisation: 6N + 12·L·d·T FLOPs per token (the PaLM / nanoGPT
    estimate) against a matmul ceiling measured here and now (fp32 on CPU, bf16 on CUDA);
  - the data share: the median time to build one batch over the median step time;
  - decode problems/s for exact-match eval, KV cache on and off (a trained --run
    decodes its real completions; an untrained model decodes to the full length).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from experiments.build import build, position_ids
from experiments.devices import resolve_device
from experiments.errors import UserError
from experiments.evaluate import complete_rendered, evaluate
from experiments.load import load_run
from experiments.runspec import resolve_spec
from experiments.batches import make_batch_fn
from experiments.training import TrainOptions, start_run
from gpt.checkpoint import read_metrics


def matmul_ceiling(device: torch.device, n: int | None = None, repeat: int = 30) -> float:
    """Best-of GFLOP/s of a square matmul: fp32 on CPU, bf16 on CUDA."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(task_name: str, preset_name: str | None, device_name: str = "auto", steps: int = 60,
          warmup: int = 10, run: Path | None = None, decode_n: int = 2000, sets: list[str] = (),
          trust_code: bool = False) -> dict[str, Any]:
    if steps <= 0 or warmup < 0 or decode_n < 0:
        raise UserError("--steps must be positive, --warmup and --decode-n non-negative")
    if run is not None and decode_n == 0:  # refused, not silently ignored
        raise UserError("--run is only used to decode problems; it needs --decode-n above 0")
    device = resolve_device(device_name)
    spec = resolve_spec(task_name, preset_name, list(sets), seed=1337, target_acc=0)
    # the run's own recipe, timed: every step logged, one eval (at the end), no early stop
    spec = dataclasses.replace(spec, train=dataclasses.replace(
        spec.train, steps=warmup + steps, eval_interval=warmup + steps, eval_iters=1, log_interval=1))
    built = build(spec)
    task, cfg = built.task, built.model
    result: dict[str, Any] = {"task": task.name, "preset": spec.preset, "device": str(device),
                              "machine": _machine(device), "torch": torch.__version__,
                              "model": f"{cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}d block {cfg.block_size}",
                              "batch_size": spec.train.batch_size}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    ceiling = matmul_ceiling(device)
    result["matmul_ceiling_gflops"] = round(ceiling, 1)
    with tempfile.TemporaryDirectory() as tmp:
        trained = _train_figures(spec, built, device_name, device, warmup, steps, ceiling, Path(tmp) / "run", result)
    if task.metric == "accuracy" and decode_n > 0:  # decoding is how such a task is scored
        decoder, label = trained.model, "untrained model, full-length decode"
        if run is not None:
            r = load_run(run, device=device_name, trust_code=trust_code)
            if r.task.name != task.name:
                raise UserError(f"--run {run} is a {r.task.name!r} run, not {task.name!r}")
            decoder, task, label = r.model, r.task, f"trained run {run}"
        result.update(_decode_figures(decoder, task, decode_n, device), decode_model=label)
        result["decode_speedup"] = round(result["decode_problems_per_s_cache"] / result["decode_problems_per_s_no_cache"], 2)
    return result


def _train_figures(spec, built, device_name: str, device: torch.device, warmup: int, steps: int, ceiling: float,
                   out: Path, result: dict[str, Any]):
    """Train the timed run in `out` and add its step time, tokens/s, MFU and data share to `result`;
    returns the trained run (its model decodes next)."""
    task, cfg, train = built.task, built.model, spec.train
    start_run(spec, TrainOptions(out=out, device=device_name, quiet=True, eval_n=0))
    recs = [r for r in read_metrics(out / "metrics.jsonl") if "ms_per_step" in r and r["step"] > warmup]
    trained = load_run(out, device=device_name)
    step_ms = statistics.median(r["ms_per_step"] for r in recs)
    batch = make_batch_fn(task, spec.seed, train.batch_size, cfg.block_size, device, ids=position_ids(cfg))
    widths = []

    def one_batch(i: int) -> None:
        x, _ = batch("train", 10**6 + i, 0)
        _sync(device)
        widths.append(x.shape[1])

    data_ms = _median_ms(one_batch, max(20, steps))
    T = statistics.mean(widths)
    tokens = train.batch_size * train.grad_accum * T
    flops_per_token = 6 * trained.model.num_params() + 12 * cfg.n_layer * cfg.n_embd * T
    result.update(
        ms_per_step=round(step_ms, 2), tokens_per_s=round(tokens / step_ms * 1000, 1),
        mfu=round(flops_per_token * tokens / (step_ms / 1000) / (ceiling * 1e9), 4),
        model_gflops=round(flops_per_token * tokens / (step_ms / 1000) / 1e9, 1),
        data_ms=round(data_ms, 3), data_share=round(data_ms / step_ms, 4),
    )
    return trained


def _decode_figures(decoder, task, decode_n: int, device: torch.device) -> dict[str, float]:
    """Problems/s decoded with and without the KV cache, and scored as `workbench eval` does."""
    figures = {}
    rendered = task.render(next(iter(task.eval_problems(0, "test", decode_n, chunk=decode_n))))
    for cache in (True, False):  # decoding alone: the same rendered prompts, completions out
        t = time.perf_counter()
        complete_rendered(decoder, task, rendered, use_cache=cache)
        _sync(device)
        figures[f"decode_problems_per_s_{'cache' if cache else 'no_cache'}"] = round(decode_n / (time.perf_counter() - t), 1)
    t = time.perf_counter()  # what `workbench eval` does: decode with the cache, then score
    evaluate(decoder, task, n=decode_n)
    figures["eval_problems_per_s"] = round(decode_n / (time.perf_counter() - t), 1)
    return figures


def _median_ms(fn, n: int) -> float:
    for i in range(3):
        fn(-1 - i)
    ts = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def format_result(r: dict[str, Any]) -> str:
    lines = [f"{r['task']} / preset {r['preset']} on {r['device']} ({r['machine']}), torch {r['torch']}",
             f"model {r['model']}, batch {r['batch_size']}",
             f"  step            {r['ms_per_step']:.2f} ms   {r['tokens_per_s']:,.0f} tokens/s",
             f"  MFU             {100 * r['mfu']:.1f}%   ({r['model_gflops']} of a measured {r['matmul_ceiling_gflops']} GFLOP/s matmul ceiling)",
             f"  data            {r['data_ms']:.3f} ms per batch = {100 * r['data_share']:.1f}% of a step"]
    if "decode_speedup" in r:
        lines.append(f"  decode          {r['decode_problems_per_s_cache']:,.0f} problems/s with the KV cache, "
                     f"{r['decode_problems_per_s_no_cache']:,.0f} without ({r['decode_speedup']}x; {r['decode_model']})")
        lines.append(f"  eval            {r['eval_problems_per_s']:,.0f} problems/s (decode with the cache, then score)")
    return "\n".join(lines)


def json_dumps(r: dict[str, Any]) -> str:
    """`bench --json`'s file: the figures, one key each."""
    return json.dumps(r, indent=1) + "\n"
