"""Named presets: frozen fragments of a run (model, train and task options) for `--preset`.

`workbench presets` lists them; runspec.resolve_spec applies one under the user's --set and
flags.  Each task has a default preset (the one whose `default_for` names it, else "small").
Results measured with a preset belong in docs/, not in its description: they go stale.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from experiments.errors import UserError
from gpt.config import GPTConfig, TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: GPTConfig
    train: TrainConfig  # its target_acc is the preset's early-stopping rule (0: never)
    task_options: tuple[tuple[str, Any], ...] = ()  # task config overrides, as --set task.KEY=V
    for_tasks: tuple[str, ...] = ()  # the tasks it is meant for; empty = any
    default_for: tuple[str, ...] = ()  # the tasks that use it when no --preset is given (fnmatch patterns)
    # kept only so that a figure of docs/LOG.md reproduces: `workbench presets` lists it with --all
    archived: bool = False

    def task_overrides(self) -> dict[str, Any]:
        return dict(self.task_options)


_NANOGPT_CPU_TRAIN = TrainConfig(
    steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100, lr_decay_steps=2000,
    weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=20,
)

# the algorithmic-task recipes: 2 layers at batch 128 for short problems, 3 layers at batch 64
# for longer ones; presets change only steps and eval cadence
_SMALL_TRAIN = TrainConfig(steps=3000, batch_size=128, lr=3e-3, min_lr=3e-4, warmup_steps=100,
                           weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=4)
_DEEP_TRAIN = TrainConfig(steps=12000, batch_size=64, lr=2e-3, min_lr=2e-4, warmup_steps=200,
                          weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=500, eval_iters=4)
_DEEP_MODEL = GPTConfig(block_size=48, n_layer=3, n_head=4, n_embd=128, dropout=0.0)
# the calculator's model since session 5, and its train settings less the step count
_CALC_MODEL = dataclasses.replace(_DEEP_MODEL, block_size=216, norm="rmsnorm", mlp="swiglu", qk_norm=True, pos="rope")
_CALC_TRAIN = dataclasses.replace(_DEEP_TRAIN, eval_interval=2500, length_chunks=4)
_CALC_TASK = (("cot", "mixed"), ("mixed_division_digits", 3), ("big_weight", 4.0))  # calc-weighted's trace and mix
# N x 1 and N x 2 multiplication for length generalisation: a of 1-10 digits, tested to 20
_MUL_LENGTHGEN_MODEL = GPTConfig(block_size=48, n_layer=3, n_head=4, n_embd=128, dropout=0.0, pos="coupled_rel",
                                 max_pos=64)
_MUL_LENGTHGEN_TASK = (("max_digits", 10), ("b_min_digits", 1), ("b_max_digits", 2), ("ood_max_digits", 20))

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "nanogpt-cpu",
            "nanoGPT's README CPU run: 4x4x128, block 64, batch 12, 2000 steps",
            GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
            _NANOGPT_CPU_TRAIN,
            for_tasks=("shakespeare", "text"),
        ),
        Preset(
            "nanogpt",
            "nanoGPT's shakespeare_char config: 6x6x384, block 256, batch 64, dropout 0.2, 5000 steps (GPU)",
            GPTConfig(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
            dataclasses.replace(_NANOGPT_CPU_TRAIN, steps=5000, batch_size=64, lr_decay_steps=5000, eval_iters=200),
            for_tasks=("shakespeare", "text"),
        ),
        Preset(
            "shakespeare",
            "default Shakespeare run: 4x4x128, block 128, 3300 steps",
            GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
            dataclasses.replace(_NANOGPT_CPU_TRAIN, steps=3300, batch_size=12, lr=2e-3, min_lr=2e-4,
                                lr_decay_steps=0, warmup_steps=100, eval_interval=500, eval_iters=20),
            for_tasks=("shakespeare", "text"), default_for=("shakespeare", "text"),
        ),
        Preset(
            "addition",
            "default addition run: 3-digit reversed, zero-padded addition; stops at 100% of 1000 held-out",
            GPTConfig(block_size=16, n_layer=2, n_head=4, n_embd=128, dropout=0.0),
            dataclasses.replace(_SMALL_TRAIN, target_acc=1.0),
            # zero padding puts every digit at a fixed position; with learned absolute positions,
            # unpadded operands plateau near 80% after 3000 steps (docs/LOG.md, 2026-11-25)
            task_options=(("zero_pad", True),),
            for_tasks=("addition",), default_for=("addition",),
        ),
        Preset(
            "add10",
            "10-digit addition, operands uniform in [0, 10^10), 3 layers x 128, 15,000 steps",
            dataclasses.replace(_DEEP_MODEL, block_size=40),
            dataclasses.replace(_DEEP_TRAIN, steps=15000),
            task_options=(("max_digits", 10), ("sampling", "uniform"), ("zero_pad", True)),
            # no early stop: 100% on 1000 problems at step 10500 was only 99.80% on 10,000;
            # the rest of the cosine decay buys the last digits (docs/LOG.md)
            for_tasks=("addition",),
        ),
        Preset(
            "add10-tiny",
            "10-digit addition with 1,932 parameters: 1 layer, 12 wide, 2 heads, interleaved coupled ids, relative bias",
            # coupled ids make each answer digit a function of a window of significances (gpt/positions.py),
            # so one small layer has a chance; interleaved ids keep the answer's own digits off the operands'
            # ids, where one layer cannot tell them apart (84.67% shared, 100% interleaved: docs/LOG.md)
            GPTConfig(block_size=40, n_layer=1, n_head=2, n_embd=12, dropout=0.0, pos="coupled_rel", max_pos=64),
            dataclasses.replace(_SMALL_TRAIN, steps=8000, lr=1e-2, min_lr=1e-3, eval_interval=500),
            task_options=(("max_digits", 10), ("sampling", "uniform"), ("ood_max_digits", 20),
                          ("coupled_ids", "interleaved")),
            for_tasks=("addition",),
        ),
        Preset(
            "lengthgen",
            "addition on 1-10 digits that generalises to 100: coupled position ids, attention by their difference",
            # coupled ids (Cho et al. 2024) with a clipped relative bias over them: what a digit attends to
            # is the same at every length (gpt/positions.py, docs/LOG.md 2026-11-30).  The bias reads only
            # id differences, so the block is the one limit on length: 640 holds two 200-digit operands
            # and their sum, and costs training nothing (batches are as wide as their longest problem)
            GPTConfig(block_size=640, n_layer=2, n_head=4, n_embd=128, dropout=0.0, pos="coupled_rel", max_pos=64),
            dataclasses.replace(_SMALL_TRAIN, steps=6000, eval_interval=1000),
            task_options=(("max_digits", 10), ("ood_max_digits", 100), ("ood_sampling", "lengths")),
            for_tasks=("addition",),
        ),
        Preset(
            "calculator",
            "calculator chains, 1-3 ops on operands up to 2 digits, cot=mixed with long division from 3 digits "
            "whose rows write their subtraction, hard steps 4x as likely in training; RMSNorm, SwiGLU, QK-norm, "
            "RoPE, packed batches",
            # cot=mixed: digit-level work only on a product of two multi-digit numbers and a division of a
            # 3+-digit value, the steps that cot=steps could not learn; big_weight: problems that multiply
            # or divide an intermediate value, the rarest and hardest, 4x as often in training (docs/LOG.md
            # 2026-12-01); division_work=subtract: each long-division row writes cur-q*b, so its quotient
            # digit is checked by a product the model can compute (docs/LOG.md 2026-12-02, second session).
            # Rows with their subtraction make a step 1.14x as costly, so 8,800 steps cost what the
            # previous default's 10,000 did; block 256 holds the longest trace (249 tokens). 7,500 steps
            # were too few for one seed of two (docs/LOG.md 2026-12-02, third session). Packed rows: the
            # same gradient as 8 length chunks at about 0.6x the step, so 10,000 steps fit the time that
            # 8,800 in chunks could not; packed, 8,800 gave 99.03%, 10,000 99.56% (docs/LOG.md 2026-12-06)
            dataclasses.replace(_CALC_MODEL, block_size=256),
            dataclasses.replace(_CALC_TRAIN, steps=10000, length_chunks=1, pack=True),
            task_options=(*_CALC_TASK, ("division_work", "subtract")),
            for_tasks=("calculator",), default_for=("calculator",),
        ),
        Preset(
            "calc-weighted",
            "calculator chains, cot=mixed, long division from 3 digits, big_weight=4, 10,000 steps: "
            "reproduces docs/LOG.md's figures before division_work=subtract",
            _CALC_MODEL,
            dataclasses.replace(_CALC_TRAIN, steps=10000),
            task_options=_CALC_TASK,
            for_tasks=("calculator",),
            archived=True,
        ),
        Preset(
            "calc-mixed",
            "calculator chains, cot=mixed, long division from 4 digits, 11,500 steps: reproduces "
            "docs/LOG.md's figures before big_weight",
            _CALC_MODEL,
            dataclasses.replace(_CALC_TRAIN, steps=11500),
            task_options=(("cot", "mixed"),),
            for_tasks=("calculator",),
            archived=True,
        ),
        Preset(
            "calc-steps",
            "calculator chains, cot=steps, 13,500 steps: reproduces docs/LOG.md's figures before cot=mixed",
            dataclasses.replace(_DEEP_MODEL, block_size=64, norm="rmsnorm", mlp="swiglu", qk_norm=True, pos="rope"),
            dataclasses.replace(_DEEP_TRAIN, steps=13500, eval_interval=1000, length_chunks=4),
            for_tasks=("calculator",),
            archived=True,
        ),
        Preset(
            "calc-v1",
            "calculator chains with the first recipe (3x128, 12,000 steps): reproduces docs/LOG.md's first figures",
            dataclasses.replace(_DEEP_MODEL, block_size=64),
            dataclasses.replace(_DEEP_TRAIN, eval_interval=1000),
            for_tasks=("calculator",),
            archived=True,
        ),
        Preset(
            "calc3",
            "3-digit calculator chains: cot=mixed, long division from 3 digits, hard steps 4x as likely, "
            "sign_work; block 416, batch 64 packed, 10,000 steps, torch.compile",
            # cot=mixed keeps traces short enough (52.7 characters on average in training) for 10,000 steps
            # of 64 problems where cot=full's fit 12,500 of 32; sign_work halves the negative-result errors
            # (docs/LOG.md 2026-12-02). 8 chunks: 0.79x the step of 4 on these traces, whose lengths vary
            # most. 8,000 steps left seed 1 at 94.41%; 10,000 give 96.66% and 95.21% on 10,000 (two seeds)
            # in 41-42 min on 2 cores: over the 30 (docs/LOG.md 2026-12-05, fourth session).
            # Packed rows (the same gradient at 0.75x the step of 8 chunks) and torch.compile (0.81x the
            # packed step) together: 29 min 17 s and 30 min 4 s on two seeds with evals every 2,500 steps,
            # so evals every 5,000: seed 1 then took 28 min 40 s, 95.27% (docs/LOG.md 2026-12-06)
            dataclasses.replace(_CALC_MODEL, block_size=416),
            dataclasses.replace(_CALC_TRAIN, steps=10000, eval_interval=5000, length_chunks=1, pack=True,
                                compile="on"),
            task_options=(("max_digits", 3), *_CALC_TASK, ("sign_work", True)),
            for_tasks=("calculator",),
        ),
        Preset(
            "calc-full3",
            "3-digit calculator chains with digit-level traces (cot=full), RoPE, length-split batches",
            dataclasses.replace(_DEEP_MODEL, block_size=540, pos="rope"),
            # traces run to 300+ characters: 4 length-sorted chunks a step halve the work on padding
            dataclasses.replace(_DEEP_TRAIN, steps=12500, batch_size=32, eval_interval=1000, length_chunks=4),
            task_options=(("max_digits", 3), ("cot", "full")),
            for_tasks=("calculator",),
        ),
        Preset(
            "multiplication",
            "2x2-digit multiplication with the partial-product scratchpad, to 100% on 1000 held-out",
            _DEEP_MODEL,
            dataclasses.replace(_DEEP_TRAIN, steps=8000, target_acc=1.0),
            task_options=(("min_digits", 2), ("max_digits", 2)),
            for_tasks=("multiplication",), default_for=("multiplication",),
        ),
        Preset(
            "mul3",
            "3x3-digit multiplication with the scratchpad; stops at 100% of 1000 held-out",
            _DEEP_MODEL,
            dataclasses.replace(_DEEP_TRAIN, steps=16000, eval_interval=1000, target_acc=1.0),
            task_options=(("min_digits", 3), ("max_digits", 3)),
            for_tasks=("multiplication",),
        ),
        Preset(
            "mul-lengthgen",
            "N x 1 and N x 2 multiplication on N <= 10, tested to N = 25: the scratchpad with coupled ids",
            # as lengthgen, with the multiplier's digits in fixed position slots that every answer digit
            # attends to (tasks/multiplication.py); the scratchpad's partial products and sums count up
            # from their own "+" or "=", so every carry is at most 8 and local (docs/LOG.md 2026-12-01).
            # coupled_local: the slots and "*" do not read a, whose length then reaches no digit
            # (N = 20: 1.5% -> 96.7% on seed 2); packed rows, as rows vary 2x in length (0.45x the step).
            # The bias reads id differences only, so the block is the one limit on length: 224 holds
            # N = 50, and costs training nothing (packed rows are as wide as the batch's longest)
            dataclasses.replace(_MUL_LENGTHGEN_MODEL, block_size=224, pos="coupled_local"),
            dataclasses.replace(_SMALL_TRAIN, steps=6000, eval_interval=1000, pack=True),
            task_options=(("format", "scratchpad"), *_MUL_LENGTHGEN_TASK[:-1], ("ood_max_digits", 25)),
            for_tasks=("multiplication",),
        ),
        Preset(
            "mul-lengthgen-reversed",
            "N x 1 and N x 2 multiplication, the answer alone, reversed: reproduces docs/LOG.md's figures "
            "before mul-lengthgen's scratchpad",
            # 3 layers: a direct N x 2 carry runs up to 17
            _MUL_LENGTHGEN_MODEL,
            dataclasses.replace(_SMALL_TRAIN, steps=10000, eval_interval=1000),
            task_options=(("format", "reversed"), *_MUL_LENGTHGEN_TASK),
            for_tasks=("multiplication",),
            archived=True,
        ),
        Preset(
            "grokking",
            "Power et al.'s setup: division mod 97 on 50% of pairs, one token per residue, weight decay 1, constant lr",
            GPTConfig(block_size=16, n_layer=2, n_head=4, n_embd=128, dropout=0.0),
            TrainConfig(steps=20000, batch_size=512, lr=1e-3, min_lr=1e-3, warmup_steps=10,
                        weight_decay=1.0, beta2=0.98, grad_clip=1.0, eval_interval=250, eval_iters=4,
                        target_acc=0.99),
            # one token per residue, as in the paper: with decimal digits neither weight decay
            # setting generalised in 35,000 steps (docs/tasks.md)
            task_options=(("tokens", "symbols"),),
            for_tasks=("modular",), default_for=("modular",),
        ),
        Preset(
            "rg",
            "reasoning-gym datasets (rg:NAME): 2 layers x 4 heads x 64, block 96, batch 64",
            # a question's English costs every step: at 64 wide and batch 64 one CPU core makes 1,600-6,000
            # steps in 10 minutes on the questions of docs/results/reasoning_gym (35-80 characters)
            GPTConfig(block_size=96, n_layer=2, n_head=4, n_embd=64, dropout=0.0),
            dataclasses.replace(_SMALL_TRAIN, batch_size=64),
            default_for=("rg:*",),
        ),
        Preset(
            "small",
            "a small general-purpose model for algorithmic tasks",
            GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=128, dropout=0.0),
            _SMALL_TRAIN,
        ),
    ]
}


FALLBACK_PRESET = "small"


def default_preset(task: str) -> str:
    return next((p.name for p in PRESETS.values() if any(fnmatchcase(task, t) for t in p.default_for)), FALLBACK_PRESET)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}{_suggest(name, PRESETS)}")
    return PRESETS[name]


def resolve_preset(task: str, preset: str | None) -> Preset:
    """The named preset (refused if it is meant for other tasks), else (None) the task's default."""
    if preset is not None and not preset.strip():
        raise UserError("--preset needs a name (see `workbench presets`); leave it out for the task's default")
    p = get_preset(preset if preset is not None else default_preset(task))
    if p.for_tasks and task not in p.for_tasks and preset:
        raise UserError(f"preset {p.name!r} is for {', '.join(p.for_tasks)}, not {task!r}")
    return p


def _suggest(name: str, known) -> str:
    """'; did you mean ...?' for a mistyped name, else the list to choose from."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    if close:
        return f"; did you mean {', '.join(close)}?"
    return f"; choose from {', '.join(sorted(known))}"
