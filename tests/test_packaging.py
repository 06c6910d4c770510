"""What a fresh machine gets: lower bounds that were really tested, and no file that only makes sense here."""

import re
import subprocess
import tomllib

from helpers import ROOT


def _lower_bounds() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    bounds = {}
    for r in reqs:
        if r.startswith("workbench["):  # an extra made of other extras (all, dev)
            continue
        # a ceiling only where a release removed what the project uses (transformer-lens 4: HookedTransformer)
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)(?:\s*,\s*<\s*[0-9][0-9.]*)?", r.split(";")[0].strip())
        assert m, f"pyproject.toml: {r!r} needs a plain lower bound (>=X.Y), and at most a ceiling (,<Z)"
        bounds[m[1].lower()] = m[2]
    return bounds


def _norm(v: str) -> tuple[int, ...]:
    parts = [int(p) for p in v.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_lower_bounds_are_the_tested_lowest_versions():
    pins = {}
    for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    bounds = _lower_bounds()
    assert pins.keys() == bounds.keys()
    assert {k: _norm(v) for k, v in pins.items()} == {k: _norm(v) for k, v in bounds.items()}


def test_no_tracked_file_depends_on_this_machine():
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True)
    links = [line.split("\t")[1] for line in listing.stdout.splitlines() if line.startswith("120000")]
    assert links == []  # a symbolic link points at a path on one machine
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", "runs"], cwd=ROOT)
    assert ignored.returncode == 0  # runs/ is ignored as a folder, a file or a link
