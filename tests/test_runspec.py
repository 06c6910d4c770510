"""RunSpec and config.json: one writer, one reader, and runs written by older versions still load."""

import json

import pytest
import torch

from experiments.build import build
from experiments.errors import UserError
from experiments.presets import PRESETS, default_preset
from experiments.runspec import RunSpec, from_record, resolve_spec, to_record, with_train


@pytest.mark.parametrize("task,preset,sets", [
    ("addition", None, []),
    ("calculator", "calc-v1", ["task.max_ops=2"]),
    ("multiplication", None, ["model.pos=abacus", "train.time_budget_s=5"]),
    ("modular", None, []),
    ("addition", "add10", ["task.train_size=50"]),
    ("copy", None, []),
])
def test_a_record_reads_back_as_the_spec_that_wrote_it(task, preset, sets):
    spec = resolve_spec(task, preset, sets, 300, 7, [])
    built = build(spec)
    record = json.loads(json.dumps(to_record(spec, built.task.vocab.chars, built.model, torch.device("cpu"))))
    back = from_record(record)
    assert back == RunSpec(spec.task, spec.task_config, built.model, spec.train, 7, spec.preset)
    assert build(back).model == built.model  # fitting a fitted model changes nothing


def test_the_stopping_rules_live_in_train():
    spec = resolve_spec("addition")
    assert spec.train.target_acc == PRESETS["addition"].train.target_acc == 1.0
    assert resolve_spec("addition", target_acc=0).train.target_acc == 0
    assert resolve_spec("addition", sets=["train.target_acc=0.5"]).train.target_acc == 0.5
    with pytest.raises(UserError, match="target_acc"):
        resolve_spec("addition", sets=["train.target_acc=2"])


def test_a_record_from_before_target_acc_moved_into_train_keeps_its_rule():
    spec = resolve_spec("addition")
    built = build(spec)
    record = to_record(spec, built.task.vocab.chars, built.model, torch.device("cpu"))
    for old_value, rule in ((1.0, 1.0), (None, 0.0)):
        old = json.loads(json.dumps(record))
        del old["train"]["target_acc"], old["world_size"], old["init_from"]
        old["target_acc"] = old_value
        back = from_record(old)
        assert back.train.target_acc == rule and back.world_size == 1 and back.init_from == ""
    changed = with_train(record, spec.train.__class__(**{**record["train"], "target_acc": 0.0}))
    assert changed["target_acc"] is None and changed["created"] == record["created"]


def test_every_task_has_a_default_preset_that_fits_it():
    for task in ("addition", "calculator", "multiplication", "modular", "copy", "sort"):
        spec = resolve_spec(task)
        assert spec.preset == default_preset(task)
        build(spec)  # the block fits, the task builds
