"""The loop's stop rules (gpt/stopping.py) one at a time, then the step function and the loop they end."""

import math

import pytest
import torch

from gpt.config import TrainConfig
from gpt.model import GPT, GPTConfig
from gpt.stopping import NonFiniteLoss, keep_update, out_of_steps, out_of_time, reached_target, stop_reason
from gpt.train import Trainer, eval_due, lr_at


# ---- each rule alone ---------------------------------------------------------------------------

def test_the_steps_rule_holds_from_the_last_step_on():
    cfg = TrainConfig(steps=10)
    assert [out_of_steps(s, cfg) for s in (0, 9, 10, 11)] == [False, False, True, True]


def test_the_time_budget_holds_once_spent_and_never_without_one():
    cfg = TrainConfig(time_budget_s=2.5)
    assert [out_of_time(t, cfg) for t in (0.0, 2.49, 2.5, 100.0)] == [False, False, True, True]
    assert not out_of_time(1e9, TrainConfig())  # 0: no budget, however long the run trains


def test_the_target_needs_val_acc_at_or_above_it_and_zero_means_never():
    cfg = TrainConfig(target_acc=0.9)
    assert reached_target({"val_acc": 0.9}, cfg) and reached_target({"val_acc": 1.0}, cfg)
    assert not reached_target({"val_acc": 0.89}, cfg)
    assert not reached_target({"val_loss": 0.0}, cfg)  # a task scored by its loss has no val_acc
    assert not reached_target({"val_acc": 1.0}, TrainConfig(target_acc=0.0))


def test_the_stop_reason_is_the_first_rule_that_holds():
    cfg = TrainConfig(steps=10)
    assert stop_reason(cfg, 3, spent=False, reached=False) == ""  # go on
    assert stop_reason(cfg, 10, spent=False, reached=False) == "steps"
    assert stop_reason(cfg, 3, spent=True, reached=False) == "time_budget"
    assert stop_reason(cfg, 10, spent=True, reached=False) == "time_budget"  # the budget over the steps
    assert stop_reason(cfg, 3, spent=True, reached=True) == "target"  # the target over both
    assert stop_reason(cfg, 10, spent=False, reached=True) == "target"


class _Unreadable:
    def __float__(self):
        raise AssertionError("a finite loss is not read (on a GPU that would wait for the device)")


def test_the_nan_policy_applies_skips_or_stops():
    stop, skip = TrainConfig(nan_policy="stop"), TrainConfig(nan_policy="skip")
    assert keep_update(True, _Unreadable(), 5, stop) and keep_update(True, _Unreadable(), 5, skip)
    assert keep_update(False, float("nan"), 5, skip) is False
    with pytest.raises(NonFiniteLoss) as e:
        keep_update(False, torch.tensor(float("inf")), 7, stop)
    assert e.value.step == 7 and e.value.value == math.inf and "at step 7" in str(e.value)


def test_evals_come_every_interval_and_at_the_end():
    cfg = TrainConfig(steps=25, eval_interval=10)
    assert [s for s in range(1, 26) if eval_due(s, cfg, spent=False)] == [10, 20, 25]
    assert eval_due(7, cfg, spent=True)  # the budget ends the run: its last step is evaluated


# ---- the step function and the loop -------------------------------------------------------------

def _trainer(tmp_path, evaluate=None, **train) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8))
    x = torch.randint(0, 7, (4, 8))
    y = torch.randint(0, 7, (4, 8))
    cfg = TrainConfig(**{"batch_size": 4, "eval_iters": 1, "warmup_steps": 0, "compile": "off", **train})
    return Trainer(model, cfg, lambda split, step, micro: (x, y), tmp_path, torch.device("cpu"),
                   evaluate=evaluate)


def test_a_step_is_one_update_at_the_schedule_s_lr(tmp_path):
    t = _trainer(tmp_path, steps=5, lr=1e-2, min_lr=1e-3)
    before = [p.detach().clone() for p in t.model.parameters()]
    done = t.train_step(0.0)
    assert t.state.step == 1 and t.state.skipped == 0 and t.state.train_time > 0
    assert done.finite and done.lr == lr_at(0, t.cfg) and done.tokens == 4 * 8
    assert math.isfinite(float(done.loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    assert t.train_step(0.0).lr == lr_at(1, t.cfg) and t.state.step == 2


def _poison(t: Trainer) -> None:
    fwd = t.fwd

    def f(x, y, **kw):
        logits, loss = fwd(x, y, **kw)
        return logits, loss * float("nan")

    t.fwd = f


def test_a_non_finite_step_is_skipped_or_stops_the_run_and_changes_no_weight(tmp_path):
    for policy in ("skip", "stop"):
        t = _trainer(tmp_path / policy, steps=5, nan_policy=policy)
        _poison(t)
        before = [p.detach().clone() for p in t.model.parameters()]
        if policy == "skip":
            done = t.train_step(0.0)
            assert not done.finite and t.state.skipped == 1 and t.state.step == 1
        else:
            with pytest.raises(NonFiniteLoss, match="at step 1"):
                t.train_step(0.0)
            assert t.state.step == 0
        assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))


def test_the_loop_stops_at_its_steps(tmp_path):
    state = _trainer(tmp_path, steps=3, eval_interval=2).run()
    assert (state.step, state.stop) == (3, "steps")


def test_the_loop_stops_once_the_target_is_reached(tmp_path):
    accs = iter([0.1, 0.5, 0.95, 1.0])
    state = _trainer(tmp_path, lambda model: {"val_acc": next(accs)}, steps=50, eval_interval=2,
                     target_acc=0.9).run()
    assert (state.step, state.stop) == (4, "target")  # evals at 0, 2, 4: the third reaches it


def test_the_loop_stops_when_the_budget_is_spent(tmp_path):
    state = _trainer(tmp_path, steps=1000, eval_interval=500, time_budget_s=1e-9).run()
    assert (state.step, state.stop) == (1, "time_budget")  # the first step spends it; its eval ends the run
