"""When a run stops: its stop rules, each a small pure function of the config and the run's state.

    steps        out_of_steps(step, cfg)          train.steps updates are done
    time budget  out_of_time(train_time, cfg)     train.time_budget_s of training time is spent
    target       reached_target(record, cfg)      an eval's val_acc reached train.target_acc
    all three    stop_reason(cfg, step, ...)      "target" | "time_budget" | "steps" | "" (go on)
    NaN policy   keep_update(finite, ...)         apply the update, skip it, or stop the run

The first three end a run at an eval, which is logged and saved; stop_reason names the first
that holds, in that order, for the eval's record ("stop") and for TrainState.stop.  The NaN
policy decides about one update: train.nan_policy=stop ends the run (NonFiniteLoss), skip
drops the update and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat

from gpt.config import TrainConfig


class NonFiniteLoss(Exception):
    def __init__(self, step: int, value: float):
        super().__init__(f"loss became {value} at step {step}")
        self.step, self.value = step, value


def out_of_steps(step: int, cfg: TrainConfig) -> bool:
    """Whether `step` updates are all the run trains (train.steps)."""
    return step >= cfg.steps


def out_of_time(train_time: float, cfg: TrainConfig) -> bool:
    """Whether `train_time` seconds of training spend the budget (train.time_budget_s; 0: none)."""
    return cfg.time_budget_s > 0 and train_time >= cfg.time_budget_s


def reached_target(record: Mapping[str, Any], cfg: TrainConfig) -> bool:
    """Whether an eval's record meets train.target_acc (0: never; a record without val_acc: no)."""
    target = cfg.target_acc
    return target > 0 and "val_acc" in record and record["val_acc"] >= target


def stop_reason(cfg: TrainConfig, step: int, spent: bool, reached: bool) -> str:
    """Why the run stops after `step` updates, or "" to go on.  spent: out_of_time held;
    reached: reached_target held at the last eval.  The target wins over the budget, and the
    budget over the steps, when several hold at once."""
    if reached:
        return "target"
    if spent:
        return "time_budget"
    if out_of_steps(step, cfg):
        return "steps"
    return ""


def keep_update(finite: bool, loss: SupportsFloat, step: int, cfg: TrainConfig) -> bool:
    """The NaN policy for update `step` (1-based): True to apply it, False to skip it
    (nan_policy=skip); NonFiniteLoss under nan_policy=stop.  `loss` is read only when it is
    not finite (reading a GPU tensor waits for the device)."""
    if finite:
        return True
    if cfg.nan_policy == "stop":
        raise NonFiniteLoss(step, float(loss))
    return False
