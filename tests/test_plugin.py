"""A task installed as a real plugin package: pip-installed into a temp dir, found by entry point."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT

PYPROJECT = textwrap.dedent('''
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "wb-demo-plugin"
    version = "0.0.1"

    [tool.setuptools]
    packages = ["wbdemo"]

    [project.entry-points."workbench.tasks"]
    demo_reverse = "wbdemo.task:DemoReverse"
    demo_broken = "wbdemo.missing:Nope"
''')

TASK = textwrap.dedent('''
    from tasks.reverse import ReverseTask

    class DemoReverse(ReverseTask):
        name = "demo_reverse"
        description = "string reversal, from a plugin"
''')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    pkg = root / "pkg"
    (pkg / "wbdemo").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "wbdemo" / "__init__.py").write_text("")
    (pkg / "wbdemo" / "task.py").write_text(TASK)
    target = root / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(pkg)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return target


def wb(site, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "experiments", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_installed_plugin_is_listed_trained_and_evaluated(site, tmp_path):
    p = wb(site, "tasks")
    assert p.returncode == 0, p.stderr
    assert "demo_reverse" in p.stdout and "plugin" in p.stdout
    flat = re.sub(r"[\s│┃|]+", "", p.stdout)  # the table folds long cells over lines
    assert "demo_broken" in flat and "failedtoimport" in flat  # listed with its error ...
    assert "addition" in p.stdout  # ... and the other tasks keep working
    run = tmp_path / "run"
    p = wb(site, "train", "--task", "demo_reverse", "--steps", "3", "--set", "model.n_layer=1", "--out", run, "-q")
    assert p.returncode == 0, p.stderr
    assert json.loads((run / "config.json").read_text())["task"]["name"] == "demo_reverse"
    p = wb(site, "eval", run, "--n", "20", "--format", "csv")
    assert p.returncode == 0, p.stderr


def test_broken_plugin_is_one_clear_error(site):
    p = wb(site, "train", "--task", "demo_broken", "--steps", "1")
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "demo_broken" in p.stderr and "ModuleNotFoundError" in p.stderr
    assert "Traceback" not in p.stderr
