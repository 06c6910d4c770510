"""`workbench export adderboard RUN --out FILE.py`: an addition run as one Python file for AdderBoard.

AdderBoard (https://github.com/anadim/AdderBoard) ranks the smallest transformers that add two
integers of 0..9,999,999,999; its verify.py imports a submission file and calls

    build_model() -> (model, metadata)   metadata: name, author, params (unique parameters after
                                         tying), architecture, tricks
    add(model, a, b) -> int              the sum, computed by the model

on 10 edge cases and 10,000 random pairs (seed 2025); 99% passes.  benchmarks/adderboard_verify.py
runs that protocol here.

The file needs only torch.  It holds the part of gpt/model.py the run uses, assembled from
templates/adderboard.py.txt (one section per option value: norm, MLP, rank, tied K = V and O = Q^T,
shared norms, position encoding), the task's format as constants (digit order, zero padding, the
coupled ids' step and the token rules that continue them: the task's own, tasks/positions.py), and
the weights as base64 of torch.save bytes.  Its add() renders a + b as the task renders it and
decodes greedily by recomputing the whole sequence: generic decoding, as AdderBoard's rules ask.
A run with an option the template has no section for is refused with one line, before any
writing; so is a run whose block cannot hold a 10-digit problem and its answer.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from experiments.errors import UserError
from experiments.load import Run, load_run
from experiments.outputs import check_output
from experiments.rundir import training_pid
from gpt.atomic import atomic_open
from gpt.config import GIVEN, RELATIVE, GPTConfig
from gpt.model import count_parameters
from tasks.base import Task
from tasks.positions import coupling_step

DIGITS = 10  # AdderBoard's operands have at most 10 digits
TEMPLATE = "adderboard.py.txt"
POSITIONS = ("none", "learned", "coupled", "coupled_rel", "coupled_local")  # those the template writes


@dataclass(frozen=True)
class AdderExport:
    path: Path
    params: int  # unique parameters (gpt.model.count_parameters), as metadata["params"] says
    sections: tuple[str, ...]  # the template's sections the file holds


def template_sections() -> dict[str, str]:
    """templates/adderboard.py.txt, cut at its `#== NAME` lines: {NAME: the code below it}."""
    text = (files("experiments") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    return {head.strip(): body.strip("\n") + "\n"
            for head, _, body in (chunk.partition("\n") for chunk in text.split("#== ")[1:])}


def check_adder(run: Run) -> None:
    """Refuse, in one line, a run the exported file could not reproduce."""
    task, cfg = run.task, run.model.config
    if task.name != "addition":
        raise UserError(f"export adderboard: {run.path} is a {task.name!r} run; AdderBoard scores addition runs")
    c = task.config
    for option in ("delimiters", "index_hints"):
        if getattr(c, option):
            raise UserError(f"export adderboard: task.{option}=true is a format the exporter cannot write; "
                            f"it writes plain, reversed or zero-padded digits")
    if cfg.pos not in POSITIONS:
        raise UserError(f"export adderboard: model.pos={cfg.pos} is an encoding the exporter cannot write; "
                        f"it writes {', '.join(POSITIONS)}")
    if cfg.pos_slots:
        raise UserError(f"export adderboard: model.pos_slots={cfg.pos_slots}: slot ids are not written")
    need = max(2 * DIGITS, 2 * c.max_digits if c.zero_pad else 0) + 2 + DIGITS + 1  # a + b = and the sum
    if cfg.block_size < need:
        raise UserError(f"export adderboard: model.block_size={cfg.block_size} cannot hold a 10-digit problem "
                        f"and its sum ({need} tokens); AdderBoard asks for operands up to 9,999,999,999")


def section_names(cfg: GPTConfig) -> list[str]:
    """The template's sections for this model, in the file's order."""
    names = ["linear.lowrank" if cfg.rank else "linear.full"]
    names += ["rmsnorm"] if cfg.norm == "rmsnorm" or cfg.qk_norm else []
    names += [f"norm.{cfg.norm}", "qk.on" if cfg.qk_norm else "qk.off", "norms.shared" if cfg.share_norms else "norms.fresh",
              f"mlp.{cfg.mlp}", "split.kv" if cfg.tie_kv else "split.qkv", "out.tied" if cfg.tie_qo else "out.full"]
    names += ["pos.coupled_rel", "pos.coupled_local"] if cfg.pos == "coupled_local" else [f"pos.{cfg.pos}"]
    names += ["attend.bias" if cfg.pos in RELATIVE else "attend.causal", "model"]
    return names + ["ids.coupled" if cfg.pos in GIVEN else "ids.none", "tail"]


def tricks(task: Task, cfg: GPTConfig) -> list[str]:
    """metadata["tricks"]: what the run does beyond a plain GPT."""
    c = task.config
    found = [f"coupled position ids ({c.coupled_ids})"] if cfg.pos in GIVEN else []
    found += [f"relative attention bias by id difference (+-{cfg.rel_clip}, farther keys masked)"] if cfg.pos in RELATIVE else []
    found += [f"rank-{cfg.rank} factorization of attention and MLP projections"] if cfg.rank else []
    found += ["tied K = V"] if cfg.tie_kv else []
    found += ["tied O = Q^T"] if cfg.tie_qo else []
    found += ["one shared norm"] if cfg.share_norms else []
    found += ["QK-norm"] if cfg.qk_norm else []
    found += ["tied embedding and output head"] if cfg.tie_weights else []
    found += ["reversed answer digits"] if c.reverse_answer else []
    found += ["reversed operand digits"] if c.reverse_operands else []
    found += ["zero-padded operands"] if c.zero_pad else []
    return found


def metadata(run: Run, name: str, author: str) -> dict[str, Any]:
    cfg = run.model.config
    arch = (f"{cfg.n_layer}L decoder (workbench GPT), d={cfg.n_embd}, {cfg.n_head}h, hd={cfg.head_size}, "
            f"{cfg.norm}, {cfg.mlp} MLP of {cfg.mlp_width}, pos={cfg.pos}")
    return {"name": name, "author": author, "params": count_parameters(run.model), "architecture": arch,
            "tricks": tricks(run.task, cfg), "source": f"{run.path.name}, step {run.step}"}


def constants(run: Run, meta: dict[str, Any]) -> str:
    """The model's shape and the task's format, as the file's module constants."""
    task, cfg, c = run.task, run.model.config, run.task.config
    rules = task.position_scheme(GIVEN[cfg.pos]).token_rules(task.vocab.chars) if cfg.pos in GIVEN else None
    values = {"VOCAB": task.vocab.chars, "END": task.end_id, "N_LAYER": cfg.n_layer, "N_HEAD": cfg.n_head,
              "N_EMBD": cfg.n_embd, "BLOCK_SIZE": cfg.block_size, "BIAS": cfg.bias, "TIE_WEIGHTS": cfg.tie_weights,
              "RANK": cfg.rank, "MLP_WIDTH": cfg.mlp_width, "MAX_POS": cfg.max_pos, "POS_SLOTS": cfg.pos_slots,
              "REL_CLIP": cfg.rel_clip,
              "MAX_DIGITS": c.max_digits, "ZERO_PAD": c.zero_pad, "REVERSE_OPERANDS": c.reverse_operands,
              "REVERSE_ANSWER": c.reverse_answer, "STEP": coupling_step(c.coupled_ids),
              "RULES": rules, "METADATA": meta}
    return "\n".join(f"{k} = {v!r}" for k, v in values.items()) + "\n"


def weights_b64(model: torch.nn.Module) -> str:
    """torch.save of the state dict (a tensor several names share is stored once), base64, in lines."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    text = base64.b64encode(buf.getvalue()).decode("ascii")
    return "\n".join(text[i:i + 100] for i in range(0, len(text), 100))


def adder_source(run: Run, name: str, author: str) -> tuple[str, dict[str, Any], list[str]]:
    """The file's text, its metadata and the sections it holds."""
    sections, names = template_sections(), section_names(run.model.config)
    meta = metadata(run, name, author)
    example = run.task.prompt(123, 45) + "..."
    header = sections["header"].format(example=example)
    body = "\n\n".join(sections[n] for n in names)
    text = f'{header}\n{constants(run, meta)}\n\n{body}\n\nWEIGHTS = """\n{weights_b64(run.model)}\n"""\n'
    return text, meta, names


def check_new_file(out: Path) -> None:
    """--out must be a new .py file: the exporter never replaces a file it did not write."""
    if Path(out).exists() or Path(out).is_symlink():
        raise UserError(f"--out {out} exists; export adderboard writes a new file and never replaces one")
    check_output(out, "--out", (".py",), device_ok=False)


def export_adderboard(run_path: Path, out: Path, name: str | None = None, author: str = "workbench",
                      checkpoint: str = "ckpt.pt", trust_code: bool = False) -> AdderExport:
    """Write the run as out (a new .py file); see the module docstring."""
    out = Path(out)
    check_new_file(out)
    pid = training_pid(run_path)
    if pid is not None:
        raise UserError(f"{run_path} is still training (pid {pid or 'unknown'}); export it when it has finished")
    run = load_run(run_path, device="cpu", checkpoint=checkpoint, trust_code=trust_code)
    check_adder(run)
    text, meta, names = adder_source(run, name or f"workbench {run.path.name}", author)

    def still_new() -> None:  # a file that appeared meanwhile is not replaced either
        if out.exists():
            raise UserError(f"--out {out} appeared while exporting; not replacing it")

    with atomic_open(out, "w", before_replace=still_new) as f:
        f.write(text)
    return AdderExport(out, meta["params"], tuple(names))
