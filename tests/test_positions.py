"""Position ids that come with the data (tasks/positions.py): each scheme against a reference
computed from Python strings, the training offsets, and decoding's continuation of the ids."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.generate import next_position
from helpers import TINY, cli
from tasks.addition import AdditionConfig, AdditionTask
from tasks.base import hash_rows
from tasks.encode import Rendered, field_strings
from tasks.multiplication import MultiplicationConfig, MultiplicationTask
from tasks.positions import PositionIds, count_on, digit_index
from tasks.testing import check_task


def naive_index(text: str, from_right: bool = False) -> list[int]:
    """Each digit's 1-based index within its run of digits; 0 for other characters."""
    if from_right:
        return naive_index(text[::-1])[::-1]
    out, run = [], 0
    for ch in text:
        run = run + 1 if ch.isdigit() else 0
        out.append(run)
    return out


def naive_count_on(text: str, prompt_ids: list[int], prompt_len: int, counting: str, step: int,
                   restart: str) -> list[int]:
    """The counting rule character by character: the prompt's ids, then each counting character
    the id before it plus step, a restart character 1, anything else 0."""
    out: list[int] = []
    for j, ch in enumerate(text):
        if j < prompt_len:
            out.append(prompt_ids[j])
        elif ch in counting:
            out.append((out[-1] if out else 0) + step)
        else:
            out.append(1 if ch in restart else 0)
    return out


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(st.text(alphabet="0123456789+=r,", max_size=24), st.integers(0, 24)),
                     min_size=1, max_size=5),
       step=st.integers(1, 3), restart=st.sampled_from(["", "r", "r,"]), seed=st.integers(0, 2**16))
def test_count_on_matches_the_rule_character_by_character(rows, step, restart, seed):
    texts = [t for t, _ in rows]
    chars, lens = field_strings(texts)
    prompt_len = np.array([min(k, len(t)) for t, k in rows], dtype=np.int64)
    prompt = np.random.default_rng(seed).integers(0, 50, size=chars.shape)
    r = Rendered(chars, prompt_len, lens)
    got = count_on(prompt, r, "0123456789", step, restart)
    for i, (t, _) in enumerate(rows):
        want = naive_count_on(t, prompt[i].tolist(), int(prompt_len[i]), "0123456789", step, restart)
        assert got[i, : len(t)].tolist() == want
        assert not got[i, len(t):].any()


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(alphabet="0123456789+=x", max_size=20), min_size=1, max_size=6),
       from_right=st.booleans())
def test_digit_index_matches_a_python_reference(texts, from_right):
    chars, lens = field_strings(texts)
    got = digit_index(chars, from_right)
    for i, t in enumerate(texts):
        assert got[i, : len(t)].tolist() == naive_index(t, from_right)
        assert not got[i, len(t):].any()


def coupled_reference(prompt: str, target: str, reverse_operands: bool, step: int = 1) -> list[int]:
    """Cho et al.'s coupling from the strings: an operand digit's significance (times the step:
    2 interleaves), '=' 1, then +step per answer token."""
    a, b = prompt.removesuffix("=").split("+")
    sig = (lambda s: list(range(1, len(s) + 1))) if reverse_operands else (lambda s: list(range(len(s), 0, -1)))
    ids = [step * i for i in sig(a)] + [0] + [step * i for i in sig(b)] + [1]
    return ids + [1 + step * k for k in range(1, len(target) + 2)]  # the answer and END count on from "="


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), reverse_operands=st.booleans(), zero_pad=st.booleans(),
       split=st.sampled_from(["train", "ood"]), coupled_ids=st.sampled_from(["shared", "interleaved"]))
def test_coupled_addition_ids_match_the_reference(seed, reverse_operands, zero_pad, split, coupled_ids):
    task = AdditionTask(AdditionConfig(max_digits=6, ood_max_digits=12, reverse_operands=reverse_operands,
                                       zero_pad=zero_pad, coupled_ids=coupled_ids))
    r = task.render(task.problems(np.random.default_rng(seed), 32, split))
    ids = task.position_ids(r, "coupled")
    step = 2 if coupled_ids == "interleaved" else 1
    for i in range(len(r)):
        want = coupled_reference(r.prompt(i), r.target(i), reverse_operands, step)
        assert ids[i, : r.length[i]].tolist() == want


def test_coupled_worked_example_from_the_docstring():
    task = AdditionTask(AdditionConfig(max_digits=3))
    r = task.render(task.problems_from_prompts(["12+345"]))
    assert r.prompt(0) + r.target(0) == "12+345=753"
    assert task.position_ids(r, "coupled")[0].tolist() == [2, 1, 0, 3, 2, 1, 1, 2, 3, 4, 5]
    # the token that predicts the answer's digit of significance i has id i, as a_i and b_i do
    assert task.position_ids(r, "abacus")[0].tolist() == [1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 0]
    # interleaved (tasks/positions.py): the predictor of significance i has id 2i - 1, between a_(i-1) and a_i
    task = AdditionTask(AdditionConfig(max_digits=3, coupled_ids="interleaved"))
    assert task.position_ids(r, "coupled")[0].tolist() == [4, 2, 0, 6, 4, 2, 1, 3, 5, 7, 9]


def test_coupled_ids_option_is_validated():
    with pytest.raises(ValueError, match="coupled_ids must be one of shared, interleaved"):
        AdditionConfig(coupled_ids="both")


@pytest.mark.parametrize("task", [AdditionTask(AdditionConfig(max_digits=8)),
                                  AdditionTask(AdditionConfig(max_digits=8, coupled_ids="interleaved")),
                                  MultiplicationTask(MultiplicationConfig(max_digits=6, format="scratchpad"))],
                         ids=["shared", "interleaved", "scratchpad"])
def test_target_ids_follow_the_rule_decoding_applies(task):
    """Training numbers each target token as decoding will: by next_position, from the prompt's last id."""
    r = task.render(task.problems(np.random.default_rng(3), 64, "train"))
    vocab = task.vocab
    for scheme in ("coupled", "abacus"):
        ids = task.position_ids(r, scheme)
        counts = torch.tensor(task.position_scheme(scheme).token_rules(vocab.chars))
        for i in range(len(r)):
            P, L = int(r.prompt_len[i]), int(r.length[i])
            last = torch.tensor([int(ids[i, P - 1])])
            for t in range(P, L):
                last = next_position(last, torch.tensor([vocab.stoi[chr(r.chars[i, t])]]), counts)
                assert int(last) == ids[i, t], (scheme, r.prompt(i) + r.target(i), t)


def test_training_offsets_cover_every_id_up_to_max_pos_and_only_in_training():
    task = AdditionTask(AdditionConfig(max_digits=4))
    ids = PositionIds("coupled", 40)
    seen = set()
    for step in range(40):
        x, _ = task.batch(7, "train", step, 0, 64, 32, ids)
        plain, _ = task.batch(7, "train", step, 0, 64, 32)
        assert np.array_equal(x[..., 0], plain)  # the tokens are the batch without ids
        p = x[..., 1]
        assert p.min() >= 0 and p.max() <= 40
        seen |= set(p[p > 0].tolist())
        # the offset is one per row: the row's non-zero ids keep their differences
        base = task.position_ids(task.render(task.problems(task.rng(7, "train", step, 0), 64, "train")), "coupled")
        base = base[:, : p.shape[1]]
        off = np.where(base > 0, p - base, 0)
        for row, b in zip(off, base):
            assert len(set(row[b > 0].tolist())) == 1
    assert seen == set(range(1, 41))
    x, _ = task.batch(7, "val", 0, 0, 64, 32, ids)  # evaluation: no offset
    val = task.render(task.problems(task.rng(7, "val", 0, 0), 64, "val"))
    assert np.array_equal(x[..., 1], task.position_ids(val, "coupled")[:, : x.shape[1]])


def test_max_pos_too_small_is_one_clear_error():
    task = AdditionTask(AdditionConfig(max_digits=10))
    with pytest.raises(ValueError, match=r"model.max_pos=8 is too small.*model.max_pos=12"):
        task.batch(0, "train", 0, 0, 256, 40, PositionIds("coupled", 8))


def test_coupled_needs_the_reversed_answer_and_a_task_that_defines_it():
    with pytest.raises(ValueError, match="reverse_answer"):
        AdditionTask(AdditionConfig(reverse_answer=False)).position_scheme("coupled")
    from tasks.parity import ParityTask  # a task with no coupled ids of its own

    with pytest.raises(ValueError, match="no coupled position ids"):
        ParityTask().position_scheme("coupled")


@pytest.mark.parametrize("cfg", [AdditionConfig(max_digits=6, reverse_operands=True),
                                 AdditionConfig(max_digits=6, coupled_ids="interleaved", ood_sampling="lengths"),
                                 AdditionConfig(max_digits=5, index_hints=True),
                                 AdditionConfig(max_digits=4, index_hints=True, reverse_operands=True,
                                                reverse_answer=False, ood_sampling="lengths")])
def test_conformance_kit_checks_position_ids(cfg):
    names = [r.name for r in check_task(AdditionTask, cfg, examples=8)]
    assert any(n.startswith("position ids (abacus") for n in names)
    assert any("coupled" in n for n in names) == (not cfg.index_hints)


def test_index_hints_render_and_parse():
    task = AdditionTask(AdditionConfig(max_digits=3, index_hints=True))
    r = task.render(task.problems_from_prompts(["123+45"]))
    assert (r.prompt(0), r.target(0)) == ("c1b2a3+b4a5=", "a8b6c1")
    assert task.parse_answer("a8b6c1") == 168
    for wrong in ("a8b6", "b8a6c1", "a8b6c", "861", "a8b6d1"):
        assert task.parse_answer(wrong) in (None, 68) and task.parse_answer(wrong) != 168
    with pytest.raises(ValueError, match="index_hints"):
        AdditionConfig(max_digits=30, ood_max_digits=60, index_hints=True)


def hints_reference(text: str, start: int, reverse: bool) -> str:
    """A plain number's digits with their letters, from the string: significance i -> HINTS[start + i]."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    sig = range(len(text)) if reverse else range(len(text) - 1, -1, -1)
    return "".join(letters[start + i] + d for i, d in zip(sig, text))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), max_digits=st.integers(1, 6), reverse_operands=st.booleans())
def test_random_hint_starts_move_every_number_of_a_training_problem_alike(seed, max_digits, reverse_operands):
    """hint_start=random: a training row is the plain row with letters from one random start, the
    same for a, b and the sum; test and ood rows start at "a"; training rows use every letter."""
    cfg = AdditionConfig(max_digits=max_digits, index_hints=True, hint_start="random",
                         reverse_operands=reverse_operands)
    task, plain = AdditionTask(cfg), AdditionTask(dataclasses.replace(cfg, index_hints=False, hint_start="a"))
    trained = set()
    for split in ("train", "test", "ood"):
        p = task.problems(np.random.default_rng(seed), 300, split)
        r, bare = task.render(p), plain.render(p)
        for i in range(len(p)):
            start = int(p["hint_start"][i]) if split == "train" else 0
            a, b = bare.prompt(i)[:-1].split("+")
            want = (hints_reference(a, start, reverse_operands) + "+" + hints_reference(b, start, reverse_operands)
                    + "=", hints_reference(bare.target(i), start, True))
            assert (r.prompt(i), r.target(i)) == want
            assert set(r.prompt(i) + r.target(i)) <= set(task.vocab.chars)
            trained |= set(r.target(i)[0::2]) if split == "train" else set()
    assert trained == set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[: task.hint_letters])


def test_hint_start_needs_index_hints():
    with pytest.raises(ValueError, match="hint_start='random' moves index hints"):
        AdditionConfig(hint_start="random")
    with pytest.raises(ValueError, match="hint_start must be"):
        AdditionConfig(index_hints=True, hint_start="z")


def test_ood_lengths_sampling_gives_equal_and_mixed_lengths():
    task = AdditionTask(AdditionConfig(max_digits=4, ood_max_digits=9, ood_sampling="lengths"))
    p = task.problems(np.random.default_rng(0), 4000, "ood")
    assert set(p["a_digits"].tolist()) == set(range(5, 10))
    equal = p["a_digits"] == p["b_digits"]
    assert 0.5 < equal.mean() < 0.62  # half by construction, plus mixed pairs that happen to match
    assert p["b_digits"].min() == 1


# ---- fixed slots: N x 1 and N x 2 multiplication (tasks/multiplication.py) -----------------------

def coupled_mul_reference(prompt: str, target: str, step: int = 1) -> list[int]:
    """From the strings: a's digits their significance, b's the slot -significance, "=" 1, then
    every target character one more than the last."""
    a, b = prompt.removesuffix("=").split("*")
    ids = [step * (len(a) - k) for k in range(len(a))] + [0] + [-(len(b) - k) for k in range(len(b))] + [1]
    for _ in target + "$":
        ids.append(ids[-1] + step)
    return ids


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), b_digits=st.integers(1, 2), split=st.sampled_from(["train", "test", "ood"]),
       coupled_ids=st.sampled_from(["shared", "interleaved"]))
def test_coupled_multiplication_ids_match_the_reference(seed, b_digits, split, coupled_ids):
    task = MultiplicationTask(MultiplicationConfig(max_digits=10, b_min_digits=1, b_max_digits=b_digits,
                                                   format="reversed", ood_max_digits=22, coupled_ids=coupled_ids))
    step = 2 if coupled_ids == "interleaved" else 1
    p = task.problems(np.random.default_rng(seed), 32, split)
    r = task.render(p)
    ids = task.position_ids(r, "coupled")
    assert task.position_scheme("coupled").slots == b_digits
    for i in range(len(r)):
        want = coupled_mul_reference(r.prompt(i), r.target(i), step)
        assert ids[i, : len(want)].tolist() == want
        assert task.parse_answer(r.target(i)) == int(p["a"][i]) * int(p["b"][i])  # Python ints, 20+ digits too


def test_multiplication_ood_goes_past_int64_and_keeps_its_held_out_set():
    task = MultiplicationTask(MultiplicationConfig(max_digits=10, b_min_digits=2, b_max_digits=2,
                                                   format="reversed", ood_max_digits=25))
    p = task.problems(np.random.default_rng(1), 200, "ood")
    assert p["a_digits"].min() == 11 and p["a_digits"].max() == 25 and p["a"].dtype == object
    assert all(len(str(a)) == d for a, d in zip(p["a"], p["a_digits"]))
    small = np.array([12, 10**17 + 3], dtype=np.int64)
    assert np.array_equal(hash_rows([small], 9), hash_rows([np.array([12, 10**17 + 3, None], dtype=object)[:2]], 9))
    with pytest.raises(ValueError, match="format=reversed or scratchpad"):
        MultiplicationTask(MultiplicationConfig(format="plain")).position_scheme("coupled")
    with pytest.raises(ValueError, match="interleaved is for task.format=reversed"):
        MultiplicationTask(MultiplicationConfig(coupled_ids="interleaved")).position_scheme("coupled")


def test_a_multiplication_run_with_slots_trains_evaluates_ood_and_refuses_rope(tmp_path, capsys):
    out = tmp_path / "mul"
    code, _, err = cli(capsys, "train", "--task", "multiplication", "--preset", "mul-lengthgen-reversed", *TINY,
                       "--set", "model.block_size=48", "--set", "task.max_digits=4", "--set", "task.ood_max_digits=8",
                       "--steps", "3", "--out", out, "--quiet", "--device", "cpu")
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["pos_slots"] == 2  # b's two digits: fitted from the task, not typed
    code, table, err = cli(capsys, "eval", out, "--split", "ood", "--n", "40", "--by", "a_digits", "--format", "json")
    assert code == 0, err
    assert {int(r["a_digits"]) for r in json.loads(table)[:-1]} <= set(range(5, 9))
    pad = tmp_path / "scratchpad"  # coupled ids restart at each "+" and "=", in training and in decoding
    code, _, err = cli(capsys, "train", "--task", "multiplication", "--preset", "mul-lengthgen", *TINY,
                       "--set", "model.block_size=64", "--set",
                       "task.max_digits=4", "--set", "task.ood_max_digits=8", "--steps", "2", "--out", pad,
                       "--quiet", "--device", "cpu")
    assert code == 0, err
    code, table, err = cli(capsys, "eval", pad, "--split", "ood", "--n", "20", "--format", "json")
    assert code == 0 and "trace_valid" in table, err
    code, _, err = cli(capsys, "train", "--task", "multiplication", "--preset", "mul-lengthgen", "--set",
                       "model.pos=coupled_rope", "--steps", "1", "--out", tmp_path / "rope", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "fixed position slots" in err, err


def test_coupled_multiplication_worked_example_from_the_docstring():
    task = MultiplicationTask(MultiplicationConfig(format="reversed", max_digits=3))
    r = task.render(task.problems_from_prompts(["123*45"]))
    assert r.prompt(0) + r.target(0) == "123*45=5355"
    assert task.position_ids(r, "coupled")[0].tolist() == [3, 2, 1, 0, -2, -1, 1, 2, 3, 4, 5, 6]
    task = MultiplicationTask(MultiplicationConfig(format="reversed", max_digits=3, coupled_ids="interleaved"))
    assert task.position_ids(r, "coupled")[0].tolist() == [6, 4, 2, 0, -2, -1, 1, 3, 5, 7, 9, 11]


def scratchpad_reference(prompt: str, target: str) -> list[int]:
    """From the strings: the prompt as in coupled_mul_reference; in the target a digit is one more
    than the last id, "+" and "=" begin a number at 1, and the end token is none (0)."""
    ids = coupled_mul_reference(prompt, "")[:len(prompt)]
    for ch in target:
        ids.append(ids[-1] + 1 if ch.isdigit() else 1)
    return ids + [0]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), b_digits=st.integers(1, 3), split=st.sampled_from(["train", "test", "ood"]))
def test_coupled_scratchpad_ids_match_the_reference(seed, b_digits, split):
    task = MultiplicationTask(MultiplicationConfig(max_digits=8, b_min_digits=1, b_max_digits=b_digits,
                                                   format="scratchpad", ood_max_digits=16))
    p = task.problems(np.random.default_rng(seed), 32, split)
    r = task.render(p)
    ids = task.position_ids(r, "coupled")
    for i in range(len(r)):
        want = scratchpad_reference(r.prompt(i), r.target(i))
        assert ids[i, : len(want)].tolist() == want
        assert task.parse_answer(r.target(i)) == int(p["a"][i]) * int(p["b"][i])


def test_coupled_scratchpad_worked_example_from_the_docstring():
    task = MultiplicationTask(MultiplicationConfig(format="scratchpad", max_digits=3))
    r = task.render(task.problems_from_prompts(["123*45"]))
    assert r.prompt(0) + r.target(0) == "123*45=516+0294=5355"
    assert task.position_ids(r, "coupled")[0].tolist() == [3, 2, 1, 0, -2, -1, 1, 2, 3, 4, 1, 2, 3, 4, 5,
                                                            1, 2, 3, 4, 5, 0]
    names = [c.name for c in check_task(MultiplicationTask, task.config, examples=8)]  # ids, shifting, slots
    assert any("coupled" in n for n in names)
