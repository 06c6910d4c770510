"""docs/adding-a-task.md: every code block runs, as a new user would run it."""

import re
import shlex
from pathlib import Path

from helpers import ROOT, cli

GUIDE = ROOT / "docs" / "adding-a-task.md"


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
    outputs = []
    for _, script in runs:
        for line in script.strip().splitlines():
            args = shlex.split(line)
            assert args[0] == "workbench", line
            code, out, err = cli(capsys, *args[1:])
            assert code == 0, f"{line}\n{err}"
            outputs.append(out)
    assert "11 of 11 checks passed" in outputs[0] and "ok    levels of difficulty" in outputs[0]
    # the eval table: an 'all' row with an accuracy; a 600-step model does well on digit sums
    table = outputs[-1]
    assert "all" in table and "%" in table
    assert Path(tmp_path / "runs" / "digit_sum" / "ckpt.pt").exists()


def test_the_guides_task_is_about_forty_lines():
    (_, code), = blocks(GUIDE.read_text(encoding="utf-8"), "file")
    lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) <= 50, len(lines)
