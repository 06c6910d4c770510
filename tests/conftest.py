import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shakespeare_path() -> Path:
    """The shared copy of tiny Shakespeare: $WORKBENCH_DATA_DIR, else ../shared/data beside the repo."""
    env = os.environ.get("WORKBENCH_DATA_DIR")
    base = Path(env) if env else ROOT.parent / "shared" / "data"
    return base / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    p = shakespeare_path()
    if not p.is_file():
        pytest.skip(f"tiny Shakespeare not found at {p}; set WORKBENCH_DATA_DIR")
    return p


def pytest_configure(config):
    # Set before any fixture (module-scoped ones included) and inherited by subprocesses:
    # tests use the shared tiny Shakespeare and never the user's cache or the network.
    if not os.environ.get("WORKBENCH_DATA_DIR") and shakespeare_path().is_file():
        os.environ["WORKBENCH_DATA_DIR"] = str(shakespeare_path().parent)
    os.environ["WORKBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="workbench-test-cache-")
