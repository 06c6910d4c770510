"""`workbench train --init-from RUN`: start from another run's weights (fine-tuning).

The new run takes the source run's model shape (n_layer, n_head, n_embd and the model
variants: positions, norm, MLP, ...; runspec.resolve_spec copies it); `--set model.*` may change only what does not change a weight's shape
(dropout) or what can be cropped (a smaller block_size).  Token embeddings are mapped
character by character, so a model pretrained on a large corpus can be fine-tuned on any
task whose characters it has seen.  The optimizer starts fresh.
"""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.errors import UserError
from experiments.load import WEIGHTS, exported_state, is_exported, load_weights, read_weights_meta
from experiments.rundir import read_config
from experiments.runspec import model_of
from gpt.checkpoint import CheckpointError, load_checkpoint
from gpt.model import GPT, GPTConfig, rename_legacy_keys, tied_names
from tasks.encode import END

# fields that decide the shape or the function of the weights: they must match the source
SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "bias", "pos", "norm", "mlp", "qk_norm", "tie_weights",
                "max_pos", "rank", "tie_kv", "tie_qo", "share_norms", "mlp_hidden")


def check_shapes(source: GPTConfig, target: GPTConfig, run: Path) -> None:
    diffs = [f"model.{k} {getattr(source, k)!r} vs {getattr(target, k)!r}"
             for k in SHAPE_FIELDS if getattr(source, k) != getattr(target, k)]
    if target.block_size > source.block_size and source.pos == "learned":
        diffs.append(f"model.block_size {target.block_size} > {source.block_size} (learned positions "
                     f"beyond the source's block were never trained)")
    if diffs:
        raise UserError(f"--init-from {run}: the model shape does not match: {', '.join(diffs)}")


def vocab_map(source_chars: str, target_chars: str, run: Path) -> list[int]:
    """For each target character, its row in the source's embedding (-1: the end token, which
    a text corpus never contains; it keeps its fresh initialisation)."""
    missing = [c for c in target_chars if c not in source_chars and c != END]
    if missing:
        shown = "".join(missing)
        raise UserError(f"--init-from {run}: its vocabulary lacks {len(missing)} character(s) this task "
                        f"needs: {shown!r}; pretrain on data that contains them")
    return [source_chars.index(c) if c in source_chars else -1 for c in target_chars]


def source_weights(run: Path, tied: list[list[str]]) -> tuple[dict[str, torch.Tensor], int]:
    """The source's latest weights and their step: a run's ckpt.pt, or an exported folder's
    model.safetensors (tied: the groups of names sharing one tensor, gpt.model.tied_names; the
    source's are the target's, whose tying check_shapes has made equal)."""
    if is_exported(run):
        return dict(exported_state(run / WEIGHTS, tied)), int(read_weights_meta(run / WEIGHTS)["step"])
    try:
        ckpt = load_checkpoint(run / "ckpt.pt")
    except CheckpointError as e:
        raise UserError(f"--init-from: {e}") from None
    return dict(ckpt["model"]), ckpt["step"]


def init_from(model: GPT, run: Path, target_chars: str) -> str:
    """Load run's latest weights into model (in place), mapping the vocabulary; returns a summary."""
    run = Path(run)
    record = read_config(run)  # the weights and their shape only: the source's task code never runs
    source = model_of(record, run)
    check_shapes(source, model.config, run)
    index = torch.tensor(vocab_map(record["task"].get("vocab") or "", target_chars, run))
    state, step = source_weights(run, tied_names(model))
    rename_legacy_keys(state)
    own = model.state_dict()
    mapped = index >= 0
    for key in ("wte.weight", "lm_head.weight"):
        if key in state:
            rows = own[key].clone()
            rows[mapped] = state[key][index[mapped]]
            state[key] = rows
    if "pos.wpe.weight" in state:  # crop learned positions to the new, smaller block
        state["pos.wpe.weight"] = state["pos.wpe.weight"][: model.pos.wpe.num_embeddings]
    if model.config.tie_weights:
        state["lm_head.weight"] = state["wte.weight"]
    load_weights(model, state, run, record)
    return (f"initialised from {run} (step {step}; {int(mapped.sum())} of this task's "
            f"{len(index)} tokens mapped from its {source.vocab_size})")
