"""Wall time of the light commands (`--help`, `tasks`, `presets`) in fresh processes, for one or
more checkouts, alternating, medians of N: issue 41's start-up figure (docs/benchmarks.md).

    python benchmarks/cli_startup.py [--n 7] CHECKOUT [CHECKOUT ...]

Each checkout runs as `python -m experiments ARGS` from its own folder, so its packages are the
ones imported (an editable install of another checkout does not get in the way).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["tasks"], ["presets"])


def once(checkout: Path, args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "experiments", *args], cwd=checkout, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=7)
    a = ap.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    for args in COMMANDS:
        for _ in range(a.n):
            for c in a.checkouts:  # alternating, so a change in the machine's load hits every checkout
                times.setdefault((str(c), " ".join(args)), []).append(once(c, args))
    print("| checkout | command | median s | min s |\n|---|---|---|---|")
    for (c, cmd), ts in times.items():
        print(f"| {c} | `workbench {cmd}` | {statistics.median(ts):.2f} | {min(ts):.2f} |")


if __name__ == "__main__":
    main()
