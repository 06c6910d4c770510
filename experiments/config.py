"""Run configuration: named presets, `--set section.key=value` overrides, validation.

A run is fully described by a RunSpec: the task (name + its config), the model
config, the train config and the seed.  Presets are frozen RunSpec fragments;
`--set` then changes single fields, converted to each field's declared type.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from typing import Any

from experiments.errors import UserError
from gpt.model import GPTConfig
from gpt.train import TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: GPTConfig
    train: TrainConfig
    task: tuple[tuple[str, Any], ...] = ()  # task config overrides
    tasks: tuple[str, ...] = ()  # tasks it is meant for; empty = any
    target_acc: float = 0.0  # stop at this val_acc unless --target-acc says otherwise; 0 = never

    def task_overrides(self) -> dict[str, Any]:
        return dict(self.task)


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

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "nanogpt-cpu",
            "nanoGPT's README CPU run: 4x4x128, block 64, batch 12, 2000 steps",
            GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
            _NANOGPT_CPU_TRAIN,
            tasks=("shakespeare", "text"),
        ),
        Preset(
            "nanogpt",
            "nanoGPT's shakespeare_char config: 6x6x384, block 256, batch 64, dropout 0.2, 5000 steps (GPU)",
            GPTConfig(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
            dataclasses.replace(_NANOGPT_CPU_TRAIN, steps=5000, batch_size=64, lr_decay_steps=5000, eval_iters=200),
            tasks=("shakespeare", "text"),
        ),
        Preset(
            "shakespeare",
            "default Shakespeare run: 4x4x128, block 128, 3300 steps",
            GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
            dataclasses.replace(_NANOGPT_CPU_TRAIN, steps=3300, batch_size=12, lr=2e-3, min_lr=2e-4,
                                lr_decay_steps=0, warmup_steps=100, eval_interval=500, eval_iters=20),
            tasks=("shakespeare", "text"),
        ),
        Preset(
            "addition",
            "default addition run: 3-digit reversed, zero-padded addition; stops at 100% of 1000 held-out",
            GPTConfig(block_size=16, n_layer=2, n_head=4, n_embd=128, dropout=0.0),
            _SMALL_TRAIN,
            # zero padding puts every digit at a fixed position; with learned absolute positions,
            # unpadded operands plateau near 80% after 3000 steps (docs/LOG.md, 2026-11-25)
            task=(("zero_pad", True),),
            tasks=("addition",), target_acc=1.0,
        ),
        Preset(
            "add10",
            "10-digit addition, operands uniform in [0, 10^10), 3 layers x 128, 15,000 steps",
            dataclasses.replace(_DEEP_MODEL, block_size=40),
            dataclasses.replace(_DEEP_TRAIN, steps=15000),
            task=(("max_digits", 10), ("sampling", "uniform"), ("zero_pad", True)),
            # no early stop: 100% on 1000 problems at step 10500 was only 99.80% on 10,000;
            # the rest of the cosine decay buys the last digits (docs/LOG.md)
            tasks=("addition",),
        ),
        Preset(
            "calculator",
            "calculator chains, 1-3 ops on operands up to 2 digits, cot=steps; RMSNorm, SwiGLU, QK-norm, RoPE, length-split batches",
            # RMSNorm + SwiGLU + QK-norm + RoPE: the best of ~20 recipes over sessions 2-6
            # (docs/benchmarks.md); 4 length-sorted chunks a step skip most of the padding
            dataclasses.replace(_DEEP_MODEL, block_size=64, norm="rmsnorm", mlp="swiglu", qk_norm=True, pos="rope"),
            dataclasses.replace(_DEEP_TRAIN, steps=13500, eval_interval=1000, length_chunks=4),
            tasks=("calculator",),
        ),
        Preset(
            "calc-v1",
            "the first calculator preset, kept so that earlier figures reproduce",
            dataclasses.replace(_DEEP_MODEL, block_size=64),
            dataclasses.replace(_DEEP_TRAIN, eval_interval=1000),
            tasks=("calculator",),
        ),
        Preset(
            "calc-full3",
            "3-digit calculator chains with digit-level traces (cot=full), RoPE, length-split batches",
            dataclasses.replace(_DEEP_MODEL, block_size=540, pos="rope"),
            # traces run to 300+ characters: 4 length-sorted chunks a step halve the work on padding
            dataclasses.replace(_DEEP_TRAIN, steps=12500, batch_size=32, eval_interval=1000, length_chunks=4),
            task=(("max_digits", 3), ("cot", "full")),
            tasks=("calculator",),
        ),
        Preset(
            "multiplication",
            "2x2-digit multiplication with the partial-product scratchpad, to 100% on 1000 held-out",
            _DEEP_MODEL,
            dataclasses.replace(_DEEP_TRAIN, steps=8000),
            task=(("min_digits", 2), ("max_digits", 2)),
            tasks=("multiplication",), target_acc=1.0,
        ),
        Preset(
            "mul3",
            "3x3-digit multiplication with the scratchpad; stops at 100% of 1000 held-out",
            _DEEP_MODEL,
            dataclasses.replace(_DEEP_TRAIN, steps=16000, eval_interval=1000),
            task=(("min_digits", 3), ("max_digits", 3)),
            tasks=("multiplication",), target_acc=1.0,
        ),
        Preset(
            "grokking",
            "Power et al.'s setup: division mod 97 on 50% of pairs, one token per residue, weight decay 1, constant lr",
            GPTConfig(block_size=16, n_layer=2, n_head=4, n_embd=128, dropout=0.0),
            TrainConfig(steps=20000, batch_size=512, lr=1e-3, min_lr=1e-3, warmup_steps=10,
                        weight_decay=1.0, beta2=0.98, grad_clip=1.0, eval_interval=250, eval_iters=4),
            # one token per residue, as in the paper: with decimal digits neither weight decay
            # setting generalised in 35,000 steps (docs/tasks.md)
            task=(("tokens", "symbols"),),
            tasks=("modular",), target_acc=0.99,
        ),
        Preset(
            "small",
            "a small general-purpose model for algorithmic tasks",
            GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=128, dropout=0.0),
            _SMALL_TRAIN,
        ),
    ]
}

DEFAULT_PRESET = {"modular": "grokking", "addition": "addition", "calculator": "calculator", "multiplication": "multiplication", "shakespeare": "shakespeare", "text": "shakespeare"}


def default_preset(task: str) -> str:
    return DEFAULT_PRESET.get(task, "small")


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}{_suggest(name, PRESETS)}")
    return PRESETS[name]


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    if close:
        return f"; did you mean {', '.join(close)}?"
    return f"; choose from {', '.join(sorted(known))}"


# ---- --set parsing ---------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def convert(value: str, typ: Any, key: str) -> Any:
    """Convert a --set string to a dataclass field's declared type."""
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if t == "bool":
            v = value.strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
            raise ValueError
        if t == "int":
            return int(value)
        if t == "float":
            return float(value)
    except ValueError:
        raise UserError(f"{key}: expected {t}, got {value!r}") from None
    return value


def parse_sets(sets: list[str]) -> dict[str, dict[str, str]]:
    """['model.n_layer=4', ...] -> {'model': {'n_layer': '4'}, ...}"""
    out: dict[str, dict[str, str]] = {"task": {}, "model": {}, "train": {}}
    for item in sets:
        key, eq, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise UserError(f"--set expects section.key=value (e.g. model.n_layer=4), got {item!r}")
        if section not in out:
            raise UserError(f"--set {key}: unknown section {section!r}; use task., model. or train.")
        out[section][name] = value
    return out


def apply_overrides(config: Any, overrides: dict[str, str], section: str) -> Any:
    """Return a copy of a frozen dataclass with string overrides converted and validated."""
    valid = {f.name: f for f in fields(config) if f.init}
    changes = {}
    for name, value in overrides.items():
        if name not in valid:
            keys = ", ".join(f"{section}.{k}" for k in valid)
            close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
            hint = f"did you mean {section}.{close[0]}? " if close else ""
            raise UserError(f"unknown key {section}.{name}; {hint}valid keys: {keys}")
        changes[name] = value if not isinstance(value, str) else convert(value, valid[name].type, f"{section}.{name}")
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def from_dict(cls: type, d: dict[str, Any], section: str) -> Any:
    """Rebuild a config dataclass from config.json, ignoring keys a newer version dropped."""
    valid = {f.name for f in fields(cls) if f.init}
    try:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in valid})
    except (ValueError, TypeError) as e:
        raise UserError(f"run config has an invalid {section} section: {e}") from None


@dataclass(frozen=True)
class RunSpec:
    task: str
    task_config: Any
    model: GPTConfig
    train: TrainConfig
    seed: int = 1337
    preset: str = ""
    include: tuple[str, ...] = field(default=())
    init_from: str = ""  # a run directory whose weights the run starts from
