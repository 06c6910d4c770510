"""Addition default config: data cost vs step cost, and eval throughput.

    python benchmarks/addition.py [RUN_DIR]

Prints batch generation ms and problems/s, training step ms, the data share of
a step, and (given a trained run) the wall time of `evaluate` on 10,000
held-out problems, KV cache on and off.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from experiments.config import PRESETS
from experiments.evaluate import evaluate
from experiments.runs import build_task, load_run, model_config_for
from experiments.train import make_batch_fn
from gpt.model import GPT
from gpt.train import make_optimizer


def median_ms(fn, n: int) -> float:
    for _ in range(5):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def main() -> None:
    preset = PRESETS["addition"]
    task = build_task("addition", preset.task_overrides())
    cfg = model_config_for(task, preset.model)
    bs = preset.train.batch_size
    batch = make_batch_fn(task, 1337, bs, cfg.block_size, torch.device("cpu"))
    step_no = iter(range(10**9))
    data_ms = median_ms(lambda: batch("train", next(step_no), 0), 300)
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = make_optimizer(model, preset.train, torch.device("cpu"))
    x, y = batch("train", 0, 0)

    def step():
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step_ms = median_ms(step, 100)
    print(f"batch of {bs}: {data_ms:.3f} ms ({bs / data_ms * 1000:,.0f} problems/s); "
          f"model step {step_ms:.2f} ms; data share {100 * data_ms / (data_ms + step_ms):.1f}%")
    if len(sys.argv) > 1:
        run = load_run(sys.argv[1], device="cpu")
        for cache in (True, False):
            t = time.perf_counter()
            table = evaluate(run.model, run.task, n=10_000, use_cache=cache)
            dt = time.perf_counter() - t
            acc = table.iloc[-1]["accuracy"]
            print(f"eval 10,000 problems, kv cache {'on' if cache else 'off'}: {dt:.2f} s "
                  f"({10_000 / dt:,.0f} problems/s), accuracy {100 * acc:.2f}%")


if __name__ == "__main__":
    main()
