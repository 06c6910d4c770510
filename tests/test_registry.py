import importlib.metadata as md
import json

import pytest

import tasks
from experiments.errors import install_hint
from experiments.registry import RESULT_COLUMNS
from helpers import cli
from tasks import TaskLoadError, TaskNotFound, get_task_class


def test_builtins_resolve_lazily():
    assert get_task_class("addition").name == "addition"
    assert set(tasks.BUILTIN) >= {"addition", "shakespeare", "text"}


def test_unknown_name_suggests_closest():
    with pytest.raises(TaskNotFound, match="did you mean addition"):
        get_task_class("adition")


def test_entry_point_plugins_load_lazily_and_fail_alone(monkeypatch):
    monkeypatch.setattr(tasks, "plugin_specs", lambda: {"plus": "tasks.addition:AdditionTask",
                                                        "broken": "no_such_module_xyz:Task"})
    assert tasks.available()["plus"][0] == "plugin"
    assert get_task_class("plus").name == "addition"
    with pytest.raises(TaskLoadError, match="broken.*no_such_module_xyz"):
        get_task_class("broken")
    assert get_task_class("addition")  # others keep working


def test_include_file_registers_its_task(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(
        "from dataclasses import dataclass\n"
        "from tasks.addition import AdditionTask, AdditionConfig\n"
        "class Plus2(AdditionTask):\n"
        "    name = 'plus2-test'\n"
    )
    assert tasks.include_file(f) == ["plus2-test"]
    assert tasks.available()["plus2-test"][0] == "include"
    with pytest.raises(TaskNotFound, match="defines no task"):
        empty = tmp_path / "empty.py"
        empty.write_text("x = 1\n")
        tasks.include_file(empty)
    with pytest.raises(TaskNotFound, match="not found"):
        tasks.include_file(tmp_path / "missing.py")


def test_unknown_task_says_how_to_load_ones_own():
    with pytest.raises(TaskNotFound, match=r"--include FILE\.py"):
        get_task_class("gcd")


def test_a_bucket_named_like_a_result_column_is_refused(tmp_path, capsys):
    """Issue 41: a bucket `steps` shared its name with results.md's `steps` column without a word."""
    f = tmp_path / "clash.py"
    f.write_text("from tasks.addition import AdditionTask\n"
                 "class Clash(AdditionTask):\n"
                 "    name = 'clash-buckets'\n"
                 "    buckets = ('a_digits', 'steps')\n")
    code, _, err = cli(capsys, "train", "--task", "clash-buckets", "--include", f, "--steps", "1",
                       "--out", tmp_path / "run", "--device", "cpu")
    assert code == 2 and "bucket column named 'steps'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
    # every column of an eval table, as written, is taken
    assert {"run", "n", "correct", "accuracy", "ci_low", "ci_high"} <= RESULT_COLUMNS
    assert not RESULT_COLUMNS & {b for name in tasks.BUILTIN for b in get_task_class(name).buckets}


def test_install_hints_follow_how_workbench_was_installed(tmp_path, monkeypatch):
    """Issue 41: in a clone installed with -e, `pip install 'workbench[export]'` fetches another
    copy from the index; the hint names the clone instead."""
    class Dist:
        def __init__(self, text):
            self.text = text

        def read_text(self, name):
            return self.text if name == "direct_url.json" else None

    clone = tmp_path / "my clone"
    clone.mkdir()
    editable = json.dumps({"url": "file://" + str(clone).replace(" ", "%20"), "dir_info": {"editable": True}})
    monkeypatch.setattr(md, "distribution", lambda name: Dist(editable))
    monkeypatch.chdir(clone)
    assert install_hint("export") == "pip install -e '.[export]'"
    monkeypatch.chdir(tmp_path)
    assert install_hint("export") == "pip install -e 'my clone[export]'"
    monkeypatch.setattr(md, "distribution", lambda name: Dist(None))  # from an index: no direct_url.json
    assert install_hint("plot") == "pip install 'workbench[plot]'"
