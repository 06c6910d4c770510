"""A run's eval completions scored again by reasoning-gym's scorer, to check the round trip (issue 45).

    workbench eval RUN --n 10000 --seed 0 --samples RUN.samples.jsonl
    python benchmarks/rg_round_trip.py RUN RUN.samples.jsonl --seed 0

The script prints one JSON line with the workbench's count of right completions, reasoning-gym's
count (score 1.0) and reasoning-gym's mean reward, which includes partial credit on traces.  The
dataset is workbench_TASK with the run's task options.  Its items are eval's problems in eval's
order, and the script checks that before scoring (tasks/reasoning_gym.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import reasoning_gym

import tasks.reasoning_gym  # noqa: F401 - registers workbench_TASK with reasoning-gym


def round_trip(run: Path, samples: Path, seed: int) -> dict[str, object]:
    record = json.loads((run / "config.json").read_text(encoding="utf-8"))
    scored = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    name = "workbench_" + record["task"]["name"]
    data = reasoning_gym.create_dataset(name, size=len(scored), seed=seed, **record["task"]["config"])
    items = list(data)
    if [it["question"] for it in items] != [s["prompt"] for s in scored]:
        raise SystemExit(f"{samples} does not hold eval's problems for --n {len(scored)} --seed {seed}")
    rewards = [data.score_answer(s["got"], it) for s, it in zip(scored, items)]
    return {"run": str(run), "dataset": name, "n": len(scored), "workbench_correct": sum(s["correct"] for s in scored),
            "rg_correct": sum(r == 1.0 for r in rewards), "rg_mean_reward": round(sum(rewards) / len(rewards), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("samples", type=Path, help="from `workbench eval RUN --samples FILE`")
    parser.add_argument("--seed", type=int, default=0, help="the eval's --seed")
    args = parser.parse_args()
    print(json.dumps(round_trip(args.run, args.samples, args.seed)))


if __name__ == "__main__":
    main()
