import fcntl
import getpass
import importlib
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """CI services set CI (GitHub Actions, GitLab, CircleCI, Travis: CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid())


# Hypothesis: the same examples on every machine by default (derandomized, nothing remembered
# between runs, a failure prints the blob that replays it), so the README's test command gives
# one result everywhere.  Random exploration is opt-in: HYPOTHESIS_PROFILE=dev draws new examples
# on each run and remembers failures.  Everything hypothesis stores (its example database, and
# caches it writes whatever the database) goes to the temp directory, never to a `.hypothesis/`
# in the working tree; the variable carries that to the CLI's subprocesses.
HYPOTHESIS_HOME = Path(os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / f"workbench-hypothesis-{_user()}")))
set_hypothesis_home_dir(HYPOTHESIS_HOME)
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True,
                          database=DirectoryBasedExampleDatabase(HYPOTHESIS_HOME / "examples"))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


def shakespeare_path() -> Path:
    """The shared copy of tiny Shakespeare: $WORKBENCH_DATA_DIR, else ../shared/data beside the repo."""
    env = os.environ.get("WORKBENCH_DATA_DIR")
    base = Path(env) if env else ROOT.parent / "shared" / "data"
    return base / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    """tiny Shakespeare, for the tests that need real text.  Missing, such a test is skipped on
    a developer's machine, but fails in CI: a CI without the data would otherwise pass those
    tests untested."""
    p = shakespeare_path()
    if not p.is_file():
        msg = (f"tiny Shakespeare not found at {p}; set WORKBENCH_DATA_DIR to the directory that holds "
               f"tinyshakespeare.txt")
        if in_ci():
            pytest.fail(msg + " (CI is set, so a missing dataset fails instead of skipping)", pytrace=False)
        pytest.skip(msg)
    return p


@pytest.fixture(scope="session")
def addition_run(tmp_path_factory) -> Path:
    """The default addition preset with 1 layer, trained for 150 steps: about 90% of held-out
    problems right, and one layer-0 head already reads the place below (the carry; tests/test_lens.py).
    Read-only for its users.  Trained once per session: under pytest-xdist the first worker to ask
    trains it, holding a lock in the folder the workers share, and the others wait and read it."""
    from experiments.cli import main  # as the other training fixtures import it: when first needed

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    out, done = shared / "addition-run", shared / "addition-run.done"
    with open(shared / "addition-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            code = main(["train", "--task", "addition", "--steps", "150", "--set", "model.n_layer=1",
                         "--set", "train.eval_interval=75", "--out", str(out), "--quiet", "--device", "cpu"])
            assert code == 0
            done.touch()
    return out


def need_module(module: str, extra: str):
    """An optional library a test needs: skipped with the install line on a developer's machine,
    failed in CI, which installs every extra the tests it runs need (.ci/run, README "Tests")."""
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"{module} is not installed: pip install -e '.[{extra}]'"
        if in_ci():
            pytest.fail(msg + " (CI is set, so a missing extra fails instead of skipping)", pytrace=False)
        pytest.skip(msg)


def pytest_configure(config):
    # pytest-xdist's workers (-n) share the machine's cores: each gets its share of them as torch
    # threads, it and the processes it starts (OMP_NUM_THREADS).  Two OpenMP teams per core spin
    # against each other and made tiny models' steps several times slower.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))
    # Set before any fixture (module-scoped ones included) and inherited by subprocesses:
    # tests use the shared tiny Shakespeare and never the user's cache or the network.
    if not os.environ.get("WORKBENCH_DATA_DIR") and shakespeare_path().is_file():
        os.environ["WORKBENCH_DATA_DIR"] = str(shakespeare_path().parent)
    os.environ["WORKBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="workbench-test-cache-")
    # torch.compile's kernels too (tests/test_pack.py): a warm cache in /tmp would time, and test,
    # what a fresh machine never has
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="workbench-test-inductor-")
    # the machine's sealing key (experiments/trust.py) for the runs the tests train: never the user's
    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-test-home-")
    # a fault left in the environment would kill every run the tests start
    os.environ.pop("WORKBENCH_FAULT", None)
