"""Experiment specs are input from anyone: no name in a spec, and no link planted in an output
directory, makes `workbench run` create, write or delete anything outside its output directory.

Every escape runs in a sandbox: the output directory `out`, and beside it `victim/` with a
file that must survive and a `seed1/` folder without config.json (the old runner removed such
folders with rmtree). A bad spec must exit 2 with one `error:` line, before any folder is
made, with or without --dry-run, and leave the whole sandbox as it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments.errors import UserError
from experiments.sweep.grid import LOCK_NAME, exclusive_lock
from experiments.sweep.specfile import load_spec
from experiments.sweep.spectypes import NAME_MAX, name_problem
from helpers import ROOT, cli, spec_head

TINY_SETS = ('"model.n_layer" = 1, "model.n_embd" = 32, "model.n_head" = 2, "model.block_size" = 12, '
             '"train.batch_size" = 8, "train.eval_interval" = 10, "train.eval_iters" = 1, "task.max_digits" = 2')

HEAD = spec_head(TINY_SETS)


def q(s: str) -> str:
    """s as a TOML basic string: every character outside printable ASCII as an escape."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif " " <= c <= "~":
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04x}")
    return '"' + "".join(out) + '"'


def variant(name: str) -> str:
    return f"\n[[variant]]\nname = {q(name)}\n"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root, links not followed: kind and content (file bytes, link target)."""
    res: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                res[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                res[rel] = ("dir",)
            else:
                res[rel] = ("file", p.read_bytes())
    return res


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    box = tmp_path / "sandbox"
    (box / "victim" / "seed1").mkdir(parents=True)
    (box / "victim" / "keep.txt").write_text("must survive\n")
    (box / "victim" / "seed1" / "precious.txt").write_text("no config.json here, and still not the runner's\n")
    monkeypatch.chdir(box)  # so that a spec without --out (runs/spec-NAME) lands in the sandbox too
    return box


# (id, the spec's text after HEAD, a setup of the sandbox, a fragment the error must hold)
def _link(rel: str, target: str):
    def setup(box: Path) -> None:
        p = box / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(box / target)
    return setup


def _file(rel: str, text: str = "x"):
    def setup(box: Path) -> None:
        p = box / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return setup


ESCAPES = [
    ("dotdot-variant", variant("../victim"), None, "variant[0].name: variant name '../victim' contains '/'"),
    ("dotdot-case-name", variant("x") + 'cases = [{ name = "../../../victim" }]', None,
     "variant[0].cases: case name '../../../victim' contains '/'"),
    ("dotdot-alone", variant(".."), None, "starts with '.'"),
    ("dot-alone", variant("."), None, "starts with '.'"),
    ("empty-name", variant(""), None, "variant name '' is empty"),
    ("empty-case-name", variant("x") + 'cases = [{ name = "" }]', None, "case name '' is empty"),
    ("absolute-path", None, None, "contains '/'"),  # the sandbox's own absolute path: filled in below
    ("nul-byte", variant("a\0b"), None, "contains '\\x00'"),
    ("over-255-bytes", variant("a" * 300), None, f"is longer than {NAME_MAX} bytes"),
    ("over-255-bytes-utf8", variant("é" * 130), None, "contains 'é'"),
    ("unicode-division-slash", variant("..\u2215victim"), None, "contains '\u2215'"),
    ("unicode-fullwidth-slash", variant("..\uff0fvictim"), None, "contains '\uff0f'"),
    ("unicode-big-solidus", variant("..\u29f8victim"), None, "contains '\u29f8'"),
    ("backslash", variant("..\\victim"), None, "contains '\\\\' (a path separator)"),
    ("leading-dash", variant("-rf"), None, "starts with '-'"),
    ("hidden-dotfile", variant(".hidden"), None, "starts with '.'"),
    ("newline", variant("a\nb"), None, "contains '\\n'"),
    ("escape-char", variant("a\x1b[2Jb"), None, "contains '\\x1b'"),
    ("delete-char", variant("a\x7fb"), None, "contains '\\x7f'"),
    ("space", variant("a b"), None, "contains ' '"),
    ("names-differing-in-case", variant("Run") + variant("run"), None, "differ only in case"),
    ("grid-value-slash", variant("g") + 'grid = { "model.pos" = ["rope", "../../../victim"] }', None,
     "variant[0].grid: folder name part 'pos=../../../victim' contains '/'"),
    ("grid-key-slash", variant("g") + 'grid = { "task.x/../../../victim" = [1] }', None,
     "variant[0].grid"),
    ("case-value-slash", variant("c") + 'cases = [{ "model.pos" = "../../../victim" }]', None,
     "variant[0].cases: folder name part 'pos=../../../victim' contains '/'"),
    ("variant-seed-not-int", variant("s") + 'seeds = ["/../../../victim"]', None,
     "variant[0].seeds: expected a non-empty list of integers"),
    ("eval-name-slash", '\n[[eval]]\nname = "../../../victim/x"\nsplit = "test"\n', None,
     "eval[0].name: eval name (it names eval-NAME.json) '../../../victim/x' contains '/'"),
    ("eval-split-slash", '\n[[eval]]\nsplit = "../../victim"\n', None, "eval[0].split: eval name"),
    ("eval-names-differing-in-case", '\n[[eval]]\nname = "Test"\n\n[[eval]]\nname = "test"\n', None,
     "differ only in case"),
    ("heatmap-name-slash", '\n[[eval]]\nname = "t"\nby = ["a_digits", "b_digits"]\nheatmap = "../../victim/h"\n',
     None, "eval[0].heatmap: heatmap name (it names heatmap-NAME.png) '../../victim/h' contains '/'"),
    ("plot-x-slash", '\n[report]\nplot_x = "task.x/../../victim"\n', None, "report.plot_x"),
    ("spec-name-slash", None, None, "name: spec name 'x/../../victim' contains '/'"),  # no --out: below
    ("output-dir-symlink", "", _link("out", "victim"), "is a symbolic link"),
    ("output-dir-dangling-symlink", "", _link("out", "nowhere"), "is a symbolic link"),
    ("output-dir-is-a-file", "", _file("out"), "exists and is not a directory"),
    ("run-folder-symlink", "", _link("out/base/seed1", "victim/seed1"), "not a plain path inside"),
    ("variant-folder-symlink", "", _link("out/base", "victim"), "not a plain path inside"),
    ("run-log-symlink", "", _link("out/base/seed1.log", "victim/keep.txt"), "not a plain path inside"),
    ("spec-copy-symlink", "", _link("out/spec.toml", "victim/keep.txt"), "not a plain path inside"),
    ("lock-file-symlink", "", _link(f"out/{LOCK_NAME}", "victim/keep.txt"), "not a plain path inside"),
    ("foreign-files-in-a-run-folder", "", _file("out/base/seed1/precious.txt"),
     "holds files that `workbench run` did not write (precious.txt)"),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("kind,body,setup,fragment", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_spec_escapes_are_refused_before_anything_is_made(sandbox, capsys, kind, body, setup, fragment, dry_run):
    args = ["--out", sandbox / "out"]
    if kind == "absolute-path":
        body = variant(str(sandbox / "victim"))
    elif kind == "spec-name-slash":
        body, args = 'name = "x/../../victim"\n', []  # the default output directory runs/spec-NAME
    spec = sandbox / "spec.toml"
    spec.write_text(body + HEAD if kind == "spec-name-slash" else HEAD + body)
    if setup is not None:
        setup(sandbox)
    before = snapshot(sandbox)

    code, _, err = cli(capsys, "run", spec, *args, *(["--dry-run"] if dry_run else []))

    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in err
    assert snapshot(sandbox) == before  # nothing made, written or deleted, inside or outside out


def test_the_reported_case_name_names_file_line_and_key(sandbox, capsys):
    # the spec: a case named ../../../../tmp/escaped, in a later table than other names
    spec = sandbox / "spec.toml"
    spec.write_text(HEAD + variant("ok") + variant("x") + 'cases = [\n  { name = "fine" },\n'
                    '  { name = "../../../../tmp/escaped" },\n]\n')
    before = snapshot(sandbox)
    code, _, err = cli(capsys, "run", spec, "--out", sandbox / "out")
    line = spec.read_text().splitlines().index('  { name = "../../../../tmp/escaped" },') + 1
    assert code == 2 and err.startswith(f"error: {spec}:{line}: variant[1].cases: case name "), err
    assert snapshot(sandbox) == before


def test_the_name_rule():
    ok = ["a", "base", "fmt.reverse_answer=true", "lr5e-4", "x,y+z", "A_1", "a" * NAME_MAX, "n=-1", "a..b"]
    assert [n for n in ok if name_problem(n)] == []
    bad = ["", ".", "..", ".x", "-x", "a/b", "a\\b", "a b", "a\0b", "a\nb", "é", "a\u2215b", "a" * (NAME_MAX + 1),
           "a:b", "a*b", "a?b", "a|b", "a<b", "a\"b", "a'b", "a$b", "a~b"]
    assert [n for n in bad if not name_problem(n)] == []


def test_every_shipped_spec_still_passes_a_dry_run(tmp_path, capsys):
    specs = sorted((ROOT / "experiments" / "specs").glob("*.toml"))
    assert specs
    for p in specs:
        code, text, err = cli(capsys, "run", p, "--out", tmp_path / p.stem, "--dry-run")
        assert code == 0 and "[new   ]" in text, (p, err)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_name_in_a_later_table_points_at_its_own_line(sandbox):
    spec = sandbox / "spec.toml"
    spec.write_text(HEAD + variant("a") + variant("b") + variant("c/d"))
    line = spec.read_text().splitlines().index('name = "c/d"') + 1
    with pytest.raises(UserError, match=rf"^{spec}:{line}: variant\[2\]\.name: "):
        load_spec(spec)


def _lock_holder(path: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from experiments.sweep.grid import exclusive_lock
        with exclusive_lock(Path({str(path)!r}), "test"):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_runner_on_the_same_output_directory_is_refused(sandbox):
    out = sandbox / "out"
    out.mkdir()
    spec = sandbox / "spec.toml"
    spec.write_text(HEAD)
    # held by this process, exactly as a first `workbench run` holds it for its whole grid
    with exclusive_lock(out / LOCK_NAME, f"output directory {out}"):
        before = snapshot(sandbox)
        proc = subprocess.run([sys.executable, "-m", "experiments", "run", str(spec), "--out", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert snapshot(sandbox) == before
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == f"error: output directory {out} is in use by another workbench process (pid {os.getpid()})"
    assert os.listdir(out) == [LOCK_NAME]  # it trained nothing and wrote nothing


def test_the_lock_dies_with_its_owner(sandbox):
    path = sandbox / LOCK_NAME
    holder = _lock_holder(path)
    try:
        with pytest.raises(UserError, match=f"in use by another workbench process \\(pid {holder.pid}\\)"):
            with exclusive_lock(path, "it"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel alone releases a flock
        holder.wait()
    with exclusive_lock(path, "it"):  # taken at once: no stale lock, no pid to check
        pass


def test_a_run_that_died_before_its_config_is_cleared_by_name_and_run(sandbox, capsys):
    # what a run folder holds when training died before writing config.json: train's lock and
    # the runner's failure record. Those go, by name; the folder is reused, and the run trains.
    spec, out = sandbox / "spec.toml", sandbox / "out"
    spec.write_text(HEAD)
    run = out / "base" / "seed1"
    run.mkdir(parents=True)
    (run / ".lock").write_text("999999")
    (run / "result.json").write_text('{"status": "failed"}')
    before = {k: v for k, v in snapshot(sandbox).items() if not k.startswith("out")}
    code, text, err = cli(capsys, "run", spec, "--out", out)
    assert code == 0, err
    assert "1 done" in text and (run / "config.json").is_file() and not (run / ".lock").exists()
    assert {k: v for k, v in snapshot(sandbox).items() if not k.startswith("out")} == before


def test_a_run_lock_still_held_is_not_removed(tmp_path):
    # a trainer left running by a killed runner still holds its run's flock: its .lock stays,
    # so train's own lock refuses a second trainer and the run is recorded as failed
    from experiments.sweep.runjob import clear_unstarted as _clear_unstarted

    run = tmp_path / "v" / "seed1"
    run.mkdir(parents=True)
    (run / "result.json").write_text("{}")
    with exclusive_lock(run / ".lock", "the run"):
        _clear_unstarted(run)
        assert sorted(os.listdir(run)) == [".lock"]
    _clear_unstarted(run)
    assert os.listdir(run) == []
