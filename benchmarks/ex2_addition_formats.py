"""EX2: reversed vs plain answers, masked vs unmasked loss, same steps, same seed.

    python benchmarks/ex2_addition_formats.py OUT_DIR [STEPS]

Trains the default addition preset four times (no early stopping) and prints
a markdown table of held-out accuracy (1000 problems) at each eval step, then
the final accuracy on 10,000 held-out problems.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from experiments.cli import main as workbench
from experiments.evaluate import evaluate
from experiments.runs import load_run

VARIANTS = {
    "reversed, masked": ["--set", "task.reverse_answer=true", "--set", "task.mask_prompt=true"],
    "plain, masked": ["--set", "task.reverse_answer=false", "--set", "task.mask_prompt=true"],
    "reversed, unmasked": ["--set", "task.reverse_answer=true", "--set", "task.mask_prompt=false"],
    "plain, unmasked": ["--set", "task.reverse_answer=false", "--set", "task.mask_prompt=false"],
}


def run(out: Path, steps: int) -> None:
    rows = {}
    for name, args in VARIANTS.items():
        d = out / name.replace(", ", "-")
        if not (d / "ckpt.pt").exists():
            code = workbench(["train", "--task", "addition", "--steps", str(steps), "--target-acc", "0",
                              "--out", str(d), "--quiet", "--device", "cpu", *args])
            if code != 0:
                raise SystemExit(f"{name}: exit {code}")
        recs = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        accs = {r["step"]: r["val_acc"] for r in recs if "val_acc" in r}
        r = load_run(d, device="cpu")
        final = evaluate(r.model, r.task, n=10_000).iloc[-1]
        rows[name] = (accs, final)
    steps_logged = sorted(next(iter(rows.values()))[0])[1:]
    print("| variant | " + " | ".join(f"step {s}" for s in steps_logged) + " | final, 10k held-out (95% CI) |")
    print("|---|" + "---|" * (len(steps_logged) + 1))
    for name, (accs, final) in rows.items():
        cells = [f"{100 * accs[s]:.1f}%" for s in steps_logged]
        ci = f"{100 * final['accuracy']:.2f}% ({100 * final['ci_low']:.2f}–{100 * final['ci_high']:.2f})"
        print(f"| {name} | " + " | ".join(cells) + f" | {ci} |")


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1500)
