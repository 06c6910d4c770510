import os
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


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # never touch the user's cache or the network from tests
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    if not os.environ.get("WORKBENCH_DATA_DIR") and shakespeare_path().is_file():
        monkeypatch.setenv("WORKBENCH_DATA_DIR", str(shakespeare_path().parent))
