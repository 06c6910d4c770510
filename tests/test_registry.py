import pytest

import tasks
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
