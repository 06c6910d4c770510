"""Fuzz the command line: every command, built from its real options, with valid, invalid and edge values.

The oracle, for every example:
- no traceback and no `internal error` ever, whatever the input;
- the exit code is 0, 1 or 2, and 2 comes with exactly one `error: ...` line on stderr, as the last line;
- a value known to be invalid (a negative count, an unknown task, a path under a file, ...) gives 2;
- a command line whose every value is valid, in a good state, gives 0.
Values whose verdict depends on the others (a preset for another task, a split the task lacks,
non-UTF-8 bytes in a name) are "edge": 0 or 2 (1 for `check`), but never a traceback.

It runs in-process (`experiments.cli.main`), so 600 examples take about half a minute; the
hypothesis profile (tests/conftest.py) makes CI's run reproducible. The exit codes it saw are
printed (`pytest -s tests/test_cli_fuzz.py`) and checked to cover 0 and 2.
"""

from __future__ import annotations

import collections
import os
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.cli import main
from helpers import TINY, cli

OK, BAD, EDGE = "ok", "bad", "edge"
# 600 by default (CI time: 1,200 took 62 s of the suite); more for a longer hunt
EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "600"))
NON_UTF8 = "caf\udce9"  # what Python makes of the argument bytes b"caf\xe9" (not UTF-8)
FLAGS = {"--resume", "--dry-run"}  # options that take no value
RESUME_IGNORES = {"--task", "--preset", "--set", "--seed", "--include", "--init-from"}  # train --resume reads config.json


@dataclass(frozen=True)
class Val:
    """One option value (or a whole option, when `flag` is empty), with what it should do."""

    text: str  # may name a place in the sandbox: {fresh}, {run}, {file}, ... (see Sandbox.place)
    verdict: str


def vals(ok=(), bad=(), edge=()) -> list[Val]:
    return [Val(str(v), OK) for v in ok] + [Val(str(v), BAD) for v in bad] + [Val(str(v), EDGE) for v in edge]


HUGE = [2**63, 10**30]
INT_BAD = [-1, *HUGE, "abc", "", "1.5", NON_UTF8]
SEED = vals(ok=[0, 1, 1337, 2**63 - 1], bad=[-1, 2**63, 10**30, "x", "", NON_UTF8])
DEVICE = vals(ok=["cpu", "auto"], bad=["tpu", "", "cuda:x", NON_UTF8], edge=["cuda", "mps", "cuda:0"])
CHECKPOINT = vals(ok=["ckpt.pt", "best.pt"], bad=["nope.pt", "../../etc/passwd", "", "/etc/passwd", "{file}"])
TASK_NAMES = vals(ok=["addition", "copy", "sort", "parity"], bad=["nosuch", "", "ADDITION", NON_UTF8, "a" * 300],
                  edge=["shakespeare", "calculator", "multiplication", "modular"])
TASK_SETS = vals(
    ok=[],
    # not model.n_layer, n_head, n_embd or block_size: train's and bench's fixed TINY sets come later and win
    bad=["task.nosuch=1", "nonsense", "task.=1", "model.max_pos=-1", "train.lr=nan", "train.steps=0",
         "model.bias=abc", "=", "task.max_digits=" + str(10**30), "train.lr=-1", "model.dropout=2", NON_UTF8],
    edge=["task.max_digits=2", "task.max_digits=0", "task.max_digits=-3", "task.length=1", "task.ops=+",
          "model.pos=rope", "model.pos=abacus", "model.pos=coupled_rel",
          "model.norm=rmsnorm", "train.length_chunks=2",
          "model.dropout=0.1", "task.min_digits=5", "model.block_size=8", "model.n_head=3"],
)
OUTPUT_FILE = vals(ok=["{fresh}.out"], bad=["{file}/x", "{dir}", "{missing}/deeper/x"], edge=["{fresh}" + NON_UTF8])
FORMATS = ["table", "csv", "markdown", "json"]
INCLUDE = vals(ok=["{plugin}"], bad=["{missing}.py", "{syntax}", "{raises}", "{dir}", "{file}"], edge=["{empty_py}"])


def opt(flag: str, pool: list[Val]) -> tuple[str, list[Val]]:
    return flag, pool


# Every command: its positional arguments (always present) and its options (each present or not).
# Options are the commands' real flags (`workbench CMD --help`).
COMMANDS: dict[str, dict] = {
    "train": dict(
        # a tiny model always, and a step count always: a valid run finishes in about a second
        fixed=[*TINY, "--set", "train.eval_interval=2", "-q"],
        args=[],
        opts=[
            opt("--task", TASK_NAMES), opt("--steps", vals(ok=[1, 2], bad=[0, -1, *HUGE, "x", ""])),
            opt("--preset", vals(bad=["nosuch", ""], edge=["addition", "small", "add10", "nanogpt-cpu", "grokking"])),
            opt("--set", TASK_SETS), opt("--seed", SEED), opt("--device", DEVICE),
            opt("--out", vals(ok=["{fresh}"], bad=["{file}", "{file}/x", "{run}", "{noconfig}"],
                              edge=["{empty}", "{fresh}" + NON_UTF8])),
            opt("--target-acc", vals(ok=[0, 0.5, 1], bad=[-1, 2, "nan", "inf", "x"])),
            opt("--include", INCLUDE), opt("--nproc", vals(ok=[1], bad=[0, -1, *HUGE, "x"])),
            opt("--init-from", vals(bad=["{missing}", "{file}", "{empty}", "{corrupt}"], edge=["{run}"])),
            opt("--resume", vals(edge=[""])),  # a flag: its verdict depends on --out
        ],
        required=("--task", "--steps"),
    ),
    "sample": dict(
        fixed=[], args=[vals(ok=["{run}", "{textrun}"], bad=["{missing}", "{empty}", "{file}", "{corrupt}",
                                                            "{badjson}", "{noconfig}"])],
        opts=[
            # whether a prompt fits depends on the run's vocabulary (text or addition): all edge
            opt("--prompt", vals(edge=["ab", "\n", "", "€", NON_UTF8, "x" * 500, "12+3="])),
            opt("--tokens", vals(ok=[1, 5], bad=[0, -1, *HUGE, "x"])),
            opt("--temperature", vals(ok=[0.8, 1e-3, 5], bad=[0, -1, "nan", "inf", "x"])),
            opt("--top-k", vals(ok=[1, 200], bad=[0, -5, "x"])), opt("--seed", SEED), opt("--device", DEVICE),
        ],
    ),
    "eval": dict(
        fixed=[], args=[vals(ok=["{run}"], bad=["{missing}", "{empty}", "{file}", "{corrupt}", "{badjson}",
                                                "{noconfig}"], edge=["{textrun}"])],
        opts=[
            opt("--n", vals(ok=[1, 7, 40], bad=[0, -1, *HUGE, "x"])),
            opt("--split", vals(ok=["test"], bad=["nope", "", "../x"], edge=["ood", "train", "val"])),
            opt("--by", vals(ok=["a_digits", "a_digits,b_digits"], bad=["nope", "a_digits,nope"], edge=["", ","])),
            opt("--set", TASK_SETS), opt("--format", vals(ok=FORMATS, bad=["xml", "", "TABLE"])),
            opt("--out", OUTPUT_FILE), opt("--samples", OUTPUT_FILE),
            opt("--plot", vals(ok=["{fresh}.png"], bad=["{file}/x.png", "{dir}"])),
            opt("--batch-size", vals(ok=[1, 3, 1024], bad=[0, -1, *HUGE, "x"])), opt("--seed", SEED),
            opt("--checkpoint", CHECKPOINT), opt("--device", DEVICE),
        ],
    ),
    "ask": dict(
        fixed=[], args=[vals(ok=["{run}"], bad=["{missing}", "{empty}", "{file}", "{corrupt}", "{noconfig}"],
                             edge=["{textrun}"]),
                        vals(ok=["12+34="], edge=["", "12+34", "9**9**9**9", "abc", "1" * 400, NON_UTF8,
                                                  "-5+3=", "0+0=", "999+999="])],
        opts=[opt("--checkpoint", CHECKPOINT), opt("--tokens", vals(ok=[1, 20], bad=[0, -1, *HUGE, "x"])),
              opt("--device", DEVICE)],
    ),
    "check": dict(
        fixed=[], args=[],
        opts=[opt("--task", TASK_NAMES), opt("--set", TASK_SETS), opt("--include", INCLUDE),
              opt("--examples", vals(ok=[1, 2], bad=[0, -1, *HUGE, "x"]))],
        required=("--task", "--examples"),
    ),
    "new-task": dict(
        fixed=[], args=[vals(ok=["mytask"], bad=["Bad", "", "../x", "addition", "9lives", "a-b", NON_UTF8])],
        opts=[opt("--dir", vals(ok=["{fresh}"], bad=["{file}", "{file}/x"], edge=["{empty}"]))],
        required=("--dir",),
    ),
    "bench": dict(
        fixed=TINY[:8], args=[],
        opts=[opt("--task", TASK_NAMES), opt("--preset", vals(bad=["nosuch"], edge=["addition", "small"])),
              opt("--steps", vals(ok=[1], bad=[0, -1, *HUGE, "x"])), opt("--warmup", vals(ok=[0], bad=[-1, *HUGE])),
              opt("--decode-n", vals(ok=[0, 3], bad=[-1, *HUGE])), opt("--run", vals(bad=["{missing}", "{file}"],
                                                                                     edge=["{run}", "{textrun}"])),
              opt("--json", OUTPUT_FILE), opt("--device", DEVICE), opt("--set", TASK_SETS)],
        required=("--steps", "--warmup", "--decode-n"),
    ),
    "show": dict(
        fixed=[], args=[],
        opts=[opt("--task", TASK_NAMES), opt("--set", TASK_SETS), opt("-n", vals(ok=[1, 3], bad=[0, -1, *HUGE])),
              opt("--split", vals(ok=["train", "test"], bad=["nope", ""], edge=["ood", "val"])),
              opt("--seed", SEED), opt("--include", INCLUDE),
              opt("--preset", vals(bad=["nosuch"], edge=["addition", "small", "calculator"]))],
        required=("--task",),
    ),
    "tasks": dict(fixed=[], args=[], opts=[opt("--include", INCLUDE),
                                          opt("--format", vals(ok=["table", "json"], bad=["xml", ""]))]),
    "presets": dict(fixed=[], args=[], opts=[opt("--format", vals(ok=["table", "json"], bad=["xml", ""]))]),
    "run": dict(
        fixed=[], args=[vals(ok=["{spec}"], bad=["{missing}.toml", "{badspec}", "{escspec}", "{file}", "{dir}"])],
        opts=[opt("--out", vals(ok=["{specout}"], bad=["{file}", "{file}/x"])),
              opt("--only", vals(ok=["base"], bad=["nosuch"], edge=["*", "", NON_UTF8])),
              opt("--dry-run", vals(ok=[""])), opt("--jobs", vals(ok=[1], bad=[0, -1, *HUGE, "x"]))],
        required=("--out",),
    ),
    "report": dict(fixed=[], args=[vals(ok=["{specout}"], bad=["{missing}", "{file}"], edge=["{empty}"])], opts=[]),
}

PLUGIN = textwrap.dedent('''
    from tasks.reverse import ReverseTask

    class FuzzReverse(ReverseTask):
        name = "fuzz_reverse"
        description = "string reversal, from an --include file"
''')
SPEC = textwrap.dedent('''
    name = "fuzz"
    budget_minutes = 1
    seeds = [1]
    [base]
    task = "addition"
    steps = 2
    target_acc = 0
    set = { "model.n_layer" = 1, "model.n_head" = 2, "model.n_embd" = 16, "model.block_size" = 32, "train.batch_size" = 8, "train.eval_iters" = 1 }
    [[eval]]
    split = "test"
    n = 20
''')


class Sandbox:
    """The places a command line may name, made once per session: a good run, broken ones, bad files."""

    def __init__(self, root: Path, run: Path, textrun: Path):
        self.root, self.n = root, 0
        self.fixed = {"run": run, "textrun": textrun}
        d = root / "fixed"
        d.mkdir()
        (d / "file").write_text("just a file\n")
        (d / "dir").mkdir()
        (d / "empty").mkdir()
        corrupt = d / "corrupt"
        shutil.copytree(run, corrupt)
        for ckpt in ("ckpt.pt", "best.pt"):
            (corrupt / ckpt).write_bytes(b"\x00not a checkpoint" * 10)
        badjson = d / "badjson"
        shutil.copytree(run, badjson)
        (badjson / "config.json").write_text("{")
        noconfig = d / "noconfig"
        shutil.copytree(run, noconfig)
        (noconfig / "config.json").unlink()
        (d / "plugin.py").write_text(PLUGIN)
        (d / "syntax.py").write_text("def broken(:\n")
        (d / "raises.py").write_text("raise RuntimeError('boom at import')\n")
        (d / "empty_py.py").write_text("")
        (d / "spec.toml").write_text(SPEC)
        (d / "badspec.toml").write_text("name = [unclosed\n")
        (d / "escspec.toml").write_text(SPEC.replace('[[eval]]', '[[variant]]\nname = "../../escaped"\n[[eval]]'))
        self.fixed.update({k: d / k for k in ("file", "dir", "empty", "corrupt", "badjson", "noconfig")})
        self.fixed.update({k: d / f"{k}.py" for k in ("plugin", "syntax", "raises", "empty_py")})
        self.fixed.update({k: d / f"{k}.toml" for k in ("spec", "badspec", "escspec")})
        self.fixed["specout"] = root / "specout"  # shared, so the spec trains once and is then skipped

    def place(self, text: str) -> str:
        """Resolve {name} in a value: fixed places, {fresh} (a new path) and {missing} (never made)."""
        if "{" not in text:
            return text
        self.n += 1
        names = {k: str(v) for k, v in self.fixed.items()}
        names["fresh"] = str(self.root / "fresh" / f"f{self.n}")
        names["missing"] = str(self.root / "missing" / f"m{self.n}")
        # runs are copied, so that a resume, a lock or a new file never changes the shared one
        for k in ("run", "textrun"):
            if "{" + k + "}" in text:
                copy = self.root / "copies" / f"{k}{self.n}"
                shutil.copytree(self.fixed[k], copy)
                names[k] = str(copy)
        return text.format(**names)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, shakespeare) -> Sandbox:
    root = tmp_path_factory.mktemp("fuzz")
    base = ["--steps", "3", *TINY, "-q", "--device", "cpu", "--set", "train.eval_interval=3"]
    assert main(["train", "--task", "addition", *base, "--out", str(root / "good-run")]) == 0
    assert main(["train", "--task", "shakespeare", *base, "--out", str(root / "good-textrun")]) == 0
    (root / "fresh").mkdir()
    box = Sandbox(root, root / "good-run", root / "good-textrun")
    # the spec's one run, trained now, so that `run` finds it done and `report` has something to report
    assert main(["run", str(box.fixed["spec"]), "--out", str(box.fixed["specout"])]) == 0
    return box


@st.composite
def command_lines(draw, sandbox: Sandbox) -> tuple[str, list[str], set[str]]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    spec = COMMANDS[name]
    argv, verdicts = [name], set()
    for pool in spec["args"]:
        v = draw(st.sampled_from(pool))
        argv.append(sandbox.place(v.text))
        verdicts.add(v.verdict)
    chosen = []
    for flag, pool in spec["opts"]:
        if flag in spec.get("required", ()) or draw(st.booleans()):
            v = draw(st.sampled_from(pool))
            argv += [flag] if flag in FLAGS else [flag, sandbox.place(v.text)]
            chosen.append((flag, v))
    # training into an existing run is refused, but resuming it is what --resume is for, and a
    # resume reads the run's own config: the options that would define a new run are not read
    resumed = name == "train" and "--resume" in argv and ("--out", "{run}") in [(f, v.text) for f, v in chosen]
    for flag, v in chosen:
        if resumed and flag in RESUME_IGNORES:
            continue
        verdicts.add(EDGE if resumed and flag == "--out" else v.verdict)
    return name, finish(name, argv), verdicts


def finish(name: str, argv: list[str]) -> list[str]:
    """The command's fixed arguments, and the CPU for a command that trains unless a device was drawn."""
    argv = argv + COMMANDS[name]["fixed"]
    if name in ("train", "bench") and "--device" not in argv:
        argv += ["--device", "cpu"]
    return argv


def expected_codes(name: str, verdicts: set[str]) -> set[int]:
    if BAD in verdicts:
        return {2}
    if verdicts <= {OK}:
        return {0}
    return {0, 1, 2} if name == "check" else {0, 2}


def test_cli_fuzz(sandbox, capsys, monkeypatch):
    monkeypatch.chdir(sandbox.root)  # runs/ of a train without --out lands in the sandbox
    seen: collections.Counter = collections.Counter()
    by_command: collections.Counter = collections.Counter()

    # every health check off: examples are slow by design, and `check` runs the kit's own @given inside this one
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data):
        name, argv, verdicts = data.draw(command_lines(sandbox))
        capsys.readouterr()
        code = main(argv)
        out = capsys.readouterr()
        seen[code] += 1
        by_command[name, code] += 1
        shown = f"workbench {' '.join(map(repr, argv))}\nexit {code}\nstdout: {out.out[-800:]}\nstderr: {out.err[-800:]}"
        assert "Traceback" not in out.err + out.out, shown
        assert "internal error" not in out.err, shown
        assert code in expected_codes(name, verdicts), shown
        lines = [ln for ln in out.err.splitlines() if ln.strip()]
        if code == 2:
            assert lines and lines[-1].startswith("error: "), shown
            assert sum(ln.startswith("error: ") for ln in lines) == 1, shown

    one()
    print(f"\nCLI fuzz: {sum(seen.values())} examples, exit codes {dict(sorted(seen.items()))}")
    print("by command: " + ", ".join(f"{n} {c}: {k}" for (n, c), k in sorted(by_command.items())))
    assert sum(seen.values()) >= min(EXAMPLES, 1000)
    # both sides of the oracle were exercised (about 1 line in 12 draws only valid values)
    assert seen[0] >= 20 and seen[2] > 200
    # every command succeeds with valid values: a random seed may not have drawn one for each
    # (hypothesis draws commands unevenly), so a command without a success runs its first valid line
    for name in sorted(set(COMMANDS) - {n for n, c in by_command if c == 0}):
        argv = first_valid_line(name, sandbox)
        capsys.readouterr()
        code = main(argv)
        out = capsys.readouterr()
        assert code == 0, f"workbench {' '.join(map(repr, argv))}\nexit {code}\nstderr: {out.err[-800:]}"


def first_valid_line(name: str, sandbox: Sandbox) -> list[str]:
    """The command with the first valid value of each positional argument and of each required option."""
    spec = COMMANDS[name]
    first_ok = lambda pool: sandbox.place(next(v for v in pool if v.verdict == OK).text)  # noqa: E731
    argv = [name, *(first_ok(pool) for pool in spec["args"])]
    for flag, pool in spec["opts"]:
        if flag in spec.get("required", ()):
            argv += [flag, first_ok(pool)]
    return finish(name, argv)


def test_fuzz_oracle_catches_an_internal_error(capsys, monkeypatch):
    """The fault is real: a command that crashes gives `internal error` and exit 1, which the fuzz rejects."""
    import experiments.commands.catalog

    def boom(*a, **k):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(experiments.commands.catalog, "list_presets", boom)
    code = main(["presets"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("internal error: ZeroDivisionError: injected") and "WORKBENCH_DEBUG=1" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("WORKBENCH_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["presets"])


def test_non_utf8_argument_in_a_real_process(tmp_path):
    """Bytes that are not UTF-8 reach the CLI as surrogates; a real process prints them without crashing."""
    import subprocess
    import sys

    from helpers import ROOT

    for args in ([b"train", b"--task", b"caf\xe9"], [b"eval", b"caf\xe9"], [b"show", b"--task", b"x\xff"]):
        p = subprocess.run([sys.executable.encode(), b"-m", b"experiments", *args], cwd=ROOT,
                           capture_output=True, env={**os.environ, "PYTHONIOENCODING": ""})
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode == 2 and err.startswith("error: ") and "Traceback" not in err, err


def test_eval_of_a_text_run_refuses_a_bucket_column(sandbox, capsys):
    """The fuzz's find (HYPOTHESIS_PROFILE=dev, issue 40): `--by` on a text run was ignored with
    exit 0; a text run's loss has no buckets, so any --by is refused."""
    code, _, err = cli(capsys, "eval", sandbox.fixed["textrun"], "--split", "train", "--by", "nope", "--n", "2")
    assert code == 2 and err.startswith("error: --by 'nope'") and "text run" in err and err.count("\n") == 1, err
    assert cli(capsys, "eval", sandbox.fixed["textrun"], "--split", "train", "--n", "2")[0] == 0
