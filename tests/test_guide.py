"""docs/adding-a-task.md: every code block runs, as a new user would run it."""

import re
import shlex
from pathlib import Path

from helpers import ROOT, cli

GUIDE = ROOT / "docs" / "adding-a-task.md"
GUIDE_ACCURACY = 95.0  # % of 2,000 held-out digit sums; the guide's run got 97.80% (2026-12-07, 2 cores)


def blocks(text: str, marker: str) -> list[tuple[str, str]]:
    """(argument, code) for each fenced block right after a `<!-- guide:MARKER ARG -->` line."""
    pat = re.compile(r"<!-- guide:" + marker + r"(?: (\S+))? -->\n```\w*\n(.*?)```", re.S)
    return [(m.group(1) or "", m.group(2)) for m in pat.finditer(text)]


def test_the_guide_runs_start_to_finish(tmp_path, monkeypatch, capsys):
    text = GUIDE.read_text(encoding="utf-8")
    files, runs = blocks(text, "file"), blocks(text, "run")
    assert files and len(runs) >= 2
    for name, code in files:
        (tmp_path / name).write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for _, script in runs:
        for line in script.strip().splitlines():
            args = shlex.split(line)
            assert args[0] == "workbench", line
            code, out, err = cli(capsys, *args[1:])
            assert code == 0, f"{line}\n{err}"
            outputs[line] = out
    check = outputs["workbench check --task digit_sum --include digit_sum.py"]
    assert "11 of 11 checks passed" in check and "ok    levels of difficulty" in check
    # the guide's promise: a 600-step model does well on digit sums it was trained on
    table = outputs["workbench eval runs/digit_sum --n 2000"]
    overall = re.search(r"all\W+2000\W+(\d+)\W+([\d.]+)%", table)
    assert overall, table
    assert float(overall.group(2)) >= GUIDE_ACCURACY, table
    assert Path(tmp_path / "runs" / "digit_sum" / "ckpt.pt").exists()


def test_the_guides_task_is_about_forty_lines():
    (_, code), = blocks(GUIDE.read_text(encoding="utf-8"), "file")
    lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) <= 50, len(lines)
