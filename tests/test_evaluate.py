"""Eval's one-pass scoring (experiments.evaluate.answers): the same completions as decoding every
row, under each kind of position encoding, on a model that gets some problems right and some wrong."""

import dataclasses

import numpy as np
import pytest
import torch

from experiments.build import fit_model, position_ids
from experiments.evaluate import answers, complete_rendered
from gpt.model import GPT, GPTConfig
from helpers import overfit
from tasks.addition import AdditionConfig, AdditionTask

TASK = AdditionTask(AdditionConfig(max_digits=3))
BASE = GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=32, max_pos=12)


@pytest.mark.parametrize("pos", ["learned", "abacus", "coupled_rel"])  # a table by place, by given id; a bias by id difference
def test_one_pass_scoring_gives_what_decoding_every_row_gives(pos):
    torch.manual_seed(0)
    cfg = fit_model(TASK, dataclasses.replace(BASE, pos=pos))
    model = GPT(cfg)
    problems = next(iter(TASK.eval_problems(0, "test", 64)))
    learnt = problems.take(np.arange(16))  # overfit on these: right after, where the rest stay wrong
    x, y = TASK.encode_batch(learnt, np.random.default_rng(0), "test", cfg.block_size, position_ids(cfg))
    overfit(model, torch.from_numpy(x), torch.from_numpy(y), steps=120)
    model.eval()
    r = TASK.render(problems)
    fast, slow = answers(model, TASK, r), complete_rendered(model, TASK, r)
    assert fast == slow
    right = sum(g == r.target(i) for i, g in enumerate(slow))
    assert 8 <= right < len(slow) - 8  # both ways of scoring a row were taken
