import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.addition import AdditionConfig, AdditionTask
from tasks.encode import END, to_xy

configs = st.builds(
    AdditionConfig,
    min_digits=st.integers(1, 3),
    max_digits=st.integers(3, 12),
    reverse_answer=st.booleans(),
    reverse_operands=st.booleans(),
    zero_pad=st.booleans(),
    delimiters=st.booleans(),
    sampling=st.sampled_from(["digits", "uniform"]),
)


def as_int(row: np.ndarray) -> int:
    return int("".join(str(d) for d in row[::-1])) if len(row) else 0


@settings(max_examples=40, deadline=None)
@given(cfg=configs, seed=st.integers(0, 2**32 - 1), split=st.sampled_from(["train", "test", "ood"]))
def test_rendered_answers_equal_python_addition(cfg, seed, split):
    task = AdditionTask(cfg)
    p = task.problems(np.random.default_rng(seed), 64, split)
    r = task.render(p)
    for i in range(len(p)):
        a, b = as_int(p["a"][i]), as_int(p["b"][i])
        assert task.parse_answer(r.target(i)) == a + b  # parse(render) round-trips ...
        assert task.solve(p.take(np.array([i])))[0] == a + b  # ... to Python's a + b
        prompt = r.prompt(i)
        assert prompt.endswith("=")
        if not cfg.reverse_operands and not cfg.zero_pad and not cfg.delimiters:
            assert prompt == f"{a}+{b}="
            expected = str(a + b)[::-1] if cfg.reverse_answer else str(a + b)
            assert r.target(i) == expected
        assert task.vocab.contains(prompt + r.target(i) + END)


def test_worked_example_from_the_docstring():
    task = AdditionTask()
    assert task.prompt(123, 45) == "123+45="
    assert task.parse_answer("861") == 168
    assert task.parse_answer("8x1") is None and task.parse_answer("") is None


@settings(max_examples=30, deadline=None)
@given(cfg=configs, seed=st.integers(0, 2**32 - 1))
def test_mask_covers_exactly_prompt_and_padding(cfg, seed):
    task = AdditionTask(cfg)
    r = task.render(task.problems(np.random.default_rng(seed), 32, "train"))
    x, y = to_xy(r, task.vocab, mask_prompt=True)
    for i in range(len(r)):
        P, L = int(r.prompt_len[i]), int(r.length[i])
        seq = task.vocab.encode(r.prompt(i) + r.target(i) + END)
        assert x[i, : L - 1].tolist() == seq[:-1]
        # y[t] predicts character t+1: masked iff that character is prompt or padding
        expect = [seq[t + 1] if P <= t + 1 < L else -1 for t in range(x.shape[1])]
        assert y[i].tolist() == expect
    _, y_unmasked = to_xy(r, task.vocab, mask_prompt=False)
    assert (y_unmasked >= 0).sum() > (y >= 0).sum()


def test_same_seed_split_step_same_batch_and_seeds_differ():
    task = AdditionTask()
    a = task.batch(1, "train", 5, 0, 32, 32)
    b = task.batch(1, "train", 5, 0, 32, 32)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    # seed s step i+1 must not equal seed s+1 step i (no seed + index scheme)
    c = task.batch(1, "train", 6, 0, 32, 32)
    d = task.batch(2, "train", 5, 0, 32, 32)
    assert not np.array_equal(c[0], d[0]) or c[0].shape != d[0].shape
    assert not np.array_equal(a[0][: len(c[0])], c[0][: len(a[0])]) or a[0].shape != c[0].shape


def test_train_and_test_are_disjoint_including_small_buckets():
    task = AdditionTask()
    rng = np.random.default_rng(0)
    train = task.problems(rng, 50_000, "train")
    test = task.problems(rng, 5_000, "test")
    key = lambda p: {(as_int(a), as_int(b)) for a, b in zip(p["a"], p["b"])}  # noqa: E731
    tr, te = key(train), key(test)
    assert not tr & te
    # the 100-problem (1,1) bucket: held out by the same per-problem hash
    small_test = {k for k in te if k[0] < 10 and k[1] < 10}
    small_train = {k for k in tr if k[0] < 10 and k[1] < 10}
    assert small_test and small_train and not small_test & small_train
    assert len(small_train | small_test) == 100


def test_holdout_does_not_depend_on_matrix_width():
    narrow = AdditionTask(AdditionConfig(max_digits=3))
    wide = AdditionTask(AdditionConfig(max_digits=8))
    p = narrow.problems(np.random.default_rng(0), 2000, "train")
    widened = type(p)(**{k: (np.pad(v, ((0, 0), (0, 5))) if v.ndim == 2 else v) for k, v in p.columns.items()})
    assert np.array_equal(narrow.is_test(p), wide.is_test(widened))


def test_ood_split_has_longer_operands():
    task = AdditionTask(AdditionConfig(max_digits=3, ood_max_digits=5))
    p = task.problems(np.random.default_rng(0), 500, "ood")
    assert p["a_digits"].min() >= 4 and p["a_digits"].max() <= 5


def test_uniform_sampling_covers_the_range():
    task = AdditionTask(AdditionConfig(max_digits=10, sampling="uniform"))
    p = task.problems(np.random.default_rng(0), 2000, "train")
    assert (p["a_digits"] == 10).mean() > 0.85  # 90% of [0, 10^10) has 10 digits


@pytest.mark.parametrize("bad", [dict(min_digits=0), dict(max_digits=-1), dict(min_digits=4, max_digits=3),
                                 dict(sampling="gauss"), dict(max_digits=3, ood_max_digits=2)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        AdditionConfig(**bad)


def test_batch_tokens_in_vocab_and_padding():
    task = AdditionTask()
    x, y = task.batch(0, "train", 0, 0, 256, 16)
    assert x.min() >= 0 and x.max() < len(task.vocab)
    assert y.max() < len(task.vocab) and y.min() >= -1


@pytest.mark.parametrize("cfg", [AdditionConfig(), AdditionConfig(zero_pad=True, delimiters=True, max_digits=5),
                                 AdditionConfig(sampling="uniform", reverse_answer=False, mask_prompt=False)])
def test_contract(cfg):
    from tasks.testing import check_task

    check_task(AdditionTask, cfg, examples=10)


def longest_carry_chain(a: int, b: int) -> int:
    """The longest run of columns that carry, by schoolbook addition on Python ints."""
    best = run = carry = 0
    while a or b or carry:
        carry = (a % 10 + b % 10 + carry) >= 10
        run = run + 1 if carry else 0
        best = max(best, run)
        a, b = a // 10, b // 10
    return best


@settings(max_examples=30, deadline=None)
@given(digits=st.integers(1, 12), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_carry_weights_give_chains_of_the_lengths_asked_for(digits, seed, data):
    length = data.draw(st.integers(0, digits))
    weights = ",".join("1" if k == length else "0" for k in range(digits + 1))
    task = AdditionTask(AdditionConfig(max_digits=digits, sampling="uniform", carry_weights=weights))
    p = task.problems(np.random.default_rng(seed), 64, "train")
    r = task.render(p)
    for i in range(len(p)):
        a, b = as_int(p["a"][i]), as_int(p["b"][i])
        assert longest_carry_chain(a, b) == length
        assert task.parse_answer(r.target(i)) == a + b


def test_carry_weights_skew_training_only_and_are_validated():
    cfg = AdditionConfig(max_digits=10, sampling="uniform", carry_weights="0,0,0,0,0,0,0,0,0,0,1")
    task = AdditionTask(cfg)
    rng = np.random.default_rng(0)
    train, test = task.problems(rng, 500, "train"), task.problems(rng, 500, "test")
    chains = [longest_carry_chain(as_int(a), as_int(b)) for a, b in zip(test["a"], test["b"])]
    assert (train["carries"] == 10).all() and np.mean(np.array(chains) == 10) < 0.05  # test: uniform pairs
    with pytest.raises(ValueError, match="needs 11 non-negative numbers"):
        AdditionConfig(max_digits=10, sampling="uniform", carry_weights="1,1")
    with pytest.raises(ValueError, match="sampling='uniform'"):
        AdditionConfig(max_digits=10, carry_weights="1,1,1,1,1,1,1,1,1,1,1")
    levels = task.levels()
    assert all(lv.get("carry_weights") == "" for lv in levels[:-1]) and levels[-1] == {}
