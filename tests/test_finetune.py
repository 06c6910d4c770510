"""--init-from (fine-tuning), task.train_size pools, train.time_budget_s, and the ood_sampling option."""

import json

import numpy as np
import pytest
import torch

from experiments.load import load_run
from helpers import TINY, cli, metrics
from tasks.addition import AdditionConfig, AdditionTask, to_int


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A tiny model 'pretrained' on a text file whose alphabet covers addition's but not all of it."""
    import experiments.cli as c

    corpus = tmp_path_factory.mktemp("corpus") / "digits.txt"
    rng = np.random.default_rng(0)
    corpus.write_text("".join(f"{a}+{b}={a + b}\n" for a, b in rng.integers(0, 999, size=(3000, 2))))
    out = tmp_path_factory.mktemp("runs") / "pre"
    assert c.main(["train", "--task", "text", "--set", f"task.path={corpus}", "--preset", "small", *TINY,
                   "--steps", "20", "--out", str(out), "--quiet"]) == 0
    return out


def test_init_from_maps_the_vocabulary_row_by_row(text_run, tmp_path, capsys):
    out = tmp_path / "ft"
    code, _, err = cli(capsys, "train", "--task", "addition", "--preset", "small", "--set", "train.batch_size=8",
                       "--set", "train.eval_iters=2", "--steps", "1", "--set", "train.lr=1e-9", "--set", "train.min_lr=0",
                       "--init-from", text_run, "--out", out, "--quiet", "--target-acc", "0")
    assert code == 0, err
    src, ft = load_run(text_run, device="cpu"), load_run(out, device="cpu")
    # the source's shape came along, not the preset's
    assert ft.model.config.n_embd == 32 and ft.model.config.n_layer == 1
    for ch in "0123456789+=":
        a = ft.model.wte.weight[ft.task.vocab.stoi[ch]]
        b = src.model.wte.weight[src.task.vocab.stoi[ch]]
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)  # lr ~ 0: one step moves nothing
    torch.testing.assert_close(ft.model.blocks[0].attn.c_attn.weight, src.model.blocks[0].attn.c_attn.weight,
                               atol=1e-6, rtol=0)
    assert ft.config["init_from"] == str(text_run.resolve())


def test_init_from_refuses_missing_characters_and_other_shapes(text_run, tmp_path, capsys):
    letters = tmp_path / "letters.txt"  # characters the digit corpus never had
    letters.write_text("To be, or not to be: that is the question.\n" * 100)
    code, _, err = cli(capsys, "train", "--task", "text", "--set", f"task.path={letters}", "--init-from", text_run,
                       "--steps", "1", "--out", tmp_path / "a", "--quiet")
    assert code == 2 and "lacks" in err and "'" in err and "Traceback" not in err
    code, _, err = cli(capsys, "train", "--task", "addition", "--preset", "small", "--init-from", text_run,
                       "--set", "model.n_layer=2", "--steps", "1", "--out", tmp_path / "b", "--quiet")
    assert code == 2 and "model.n_layer 1 vs 2" in err
    code, _, err = cli(capsys, "train", "--task", "addition", "--preset", "small", "--init-from", text_run,
                       "--set", "model.mlp_hidden=8", "--steps", "1", "--out", tmp_path / "b", "--quiet")
    assert code == 2 and "model.mlp_hidden 0 vs 8" in err
    code, _, err = cli(capsys, "train", "--task", "addition", "--init-from", tmp_path / "nope", "--steps", "1",
                       "--out", tmp_path / "c", "--quiet")
    assert code == 2 and "nope" in err


def test_train_pool_is_fixed_distinct_and_seeded():
    task = AdditionTask(AdditionConfig(max_digits=3, train_size=300))
    pool = task.train_pool(7)
    keys = {(to_int(a), to_int(b)) for a, b in zip(pool["a"], pool["b"])}
    assert len(pool) == 300 and len(keys) == 300
    assert not task.is_test(pool).any()
    again = AdditionTask(AdditionConfig(max_digits=3, train_size=300)).train_pool(7)
    assert np.array_equal(again["a"], pool["a"])
    assert len(keys & {(to_int(a), to_int(b)) for a, b in zip(task.train_pool(8)["a"], task.train_pool(8)["b"])}) < 30
    # every training batch draws only from the pool
    x, _ = task.batch(7, "train", 5, 0, 64, 16)
    prompts = {"".join(task.vocab.chars[i] for i in row).split("=")[0] for row in x}
    assert prompts <= {f"{a}+{b}" for a, b in keys}
    with pytest.raises(ValueError, match="fewer than"):
        AdditionTask(AdditionConfig(min_digits=1, max_digits=1, train_size=500)).train_pool(0)


def test_train_size_runs_log_train_acc(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = cli(capsys, "train", "--task", "addition", "--preset", "small", *TINY, "--set", "task.train_size=50",
                       "--steps", "4", "--set", "train.eval_interval=2", "--out", out, "--quiet", "--target-acc", "0")
    assert code == 0, err
    assert all("train_acc" in r for r in metrics(out) if "val_acc" in r)


def test_time_budget_stops_evaluates_and_stays_stopped(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["train", "--task", "addition", "--preset", "small", *TINY, "--steps", "100000",
            "--set", "train.time_budget_s=1.0", "--set", "train.eval_interval=100000", "--out", out, "--quiet",
            "--target-acc", "0"]
    assert cli(capsys, *args)[0] == 0
    recs = metrics(out, drop_timing=False)
    last = recs[-1]
    assert 0 < last["step"] < 100000 and "val_loss" in last and last["train_time"] >= 1.0
    # the schedule decayed over the budget, not the 100,000 steps: the last step ran at about min_lr
    train = json.loads((out / "config.json").read_text())["train"]
    assert last["lr"] <= train["min_lr"] + 0.01 * (train["lr"] - train["min_lr"]), (last["lr"], train)
    assert cli(capsys, "train", "--resume", "--out", out, "--quiet")[0] == 0
    assert metrics(out, drop_timing=False)[-1]["step"] == last["step"]  # the budget is spent


def test_ood_any_covers_every_pair_with_a_long_operand():
    task = AdditionTask(AdditionConfig(max_digits=3, ood_max_digits=5, ood_sampling="any"))
    p = task.problems(np.random.default_rng(0), 3000, "ood")
    pairs = set(zip(p["a_digits"].tolist(), p["b_digits"].tolist()))
    assert pairs == {(a, b) for a in range(1, 6) for b in range(1, 6) if max(a, b) > 3}
    for a, b, c in zip(p["a"], p["b"], p["c"]):
        assert to_int(a) + to_int(b) == to_int(c)
    both = AdditionTask(AdditionConfig(max_digits=3, ood_max_digits=5)).problems(np.random.default_rng(0), 500, "ood")
    assert both["a_digits"].min() == 4 and both["b_digits"].min() == 4
