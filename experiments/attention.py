"""`workbench attention RUN PROMPT`: every layer x head's attention over a prompt and its greedy
completion, drawn as a grid of heatmaps (PNG) or written as JSON.

The weights are recorded in a forward pass of the model itself (`GPT.forward(..., attention=[])`),
so the position encoding, QK-norm and causal mask that made the output made them too.  Row i of
a map is what token i attends to while the model predicts token i + 1: the row of the prompt's
last token ('=') is where the first answer token is chosen.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.build import rendered_positions
from experiments.errors import UserError, install_hint
from experiments.load import Run, load_run
from experiments.outputs import check_output, write_output
from experiments.plots import pyplot
from gpt.generate import with_positions
from gpt.model import GPT
from tasks.base import Task
from tasks.encode import Rendered, field_strings

FORMATS = ("png", "json")


@dataclass
class AttentionMaps:
    tokens: list[str]  # prompt + completion (end token stripped), one character each
    prompt_len: int  # tokens[:prompt_len] is the prompt
    weights: np.ndarray  # (L, H, T, T) float32: [layer, head, query, key], zero above the diagonal
    source: str = ""  # which run and checkpoint, for the picture's title

    @property
    def prompt(self) -> str:
        return "".join(self.tokens[: self.prompt_len])

    @property
    def completion(self) -> str:
        return "".join(self.tokens[self.prompt_len :])


def output_choice(fmt: str | None, out: Path | None) -> tuple[str, Path]:
    """--format and --out, defaulting each from the other: the format from --out's suffix
    (.json -> json, anything else png), the file attention.png / attention.json here.

    A PNG without matplotlib is refused now, before the model is loaded."""
    if fmt is None:
        fmt = "json" if out is not None and out.suffix.lower() == ".json" else "png"
    if fmt not in FORMATS:
        raise UserError(f"--format must be png or json, got {fmt!r}")
    if fmt == "png" and pyplot() is None:
        raise UserError(f"--format png needs matplotlib: {install_hint('plot')}")
    return fmt, out if out is not None else Path(f"attention.{fmt}")


def task_prompt(task: Task, prompt: str) -> str:
    """The prompt as the task renders it, where the task can read typed problems (as
    `workbench ask` does): addition's '123+45' becomes '123+45=' (zero-padded if the task pads)."""
    if task.end_id is None:  # a text corpus: the text itself
        return prompt
    try:
        problems = task.problems_from_prompts([prompt])
    except NotImplementedError:
        return prompt
    except (ValueError, OverflowError) as e:
        raise UserError(f"task {task.name!r} cannot read PROMPT: {e}") from None
    return task.render(problems).prompt(0)


@torch.no_grad()
def record_attention(model: GPT, ids: list[int], pos: np.ndarray | None = None) -> np.ndarray:
    """One forward pass over ids (and their position ids, for a model that takes them) with the
    weights recorded -> (L, H, T, T) float32."""
    idx = torch.tensor([ids], dtype=torch.long, device=model.wte.weight.device)  # (1, T)
    if pos is not None:
        idx = with_positions(idx, torch.as_tensor(pos[None, : len(ids)], dtype=torch.long, device=idx.device))
    layers: list[torch.Tensor] = []
    model(idx, attention=layers)
    return torch.stack(layers)[:, 0].float().cpu().numpy()  # (L, 1, H, T, T) -> (L, H, T, T)


def attention_of(run: Run, prompt: str, tokens: int = 32) -> AttentionMaps:
    """The maps of a loaded run over prompt + its greedy completion.  A task with an end token
    completes to it; a text run is continued for `tokens` characters."""
    block = run.model.config.block_size
    prompt = task_prompt(run.task, prompt)
    ids = run.encode_prompt(prompt)
    if not ids:
        raise UserError("PROMPT is empty")
    if len(ids) >= block:  # run.complete would silently keep only its tail
        raise UserError(f"the prompt has {len(ids)} characters; run {run.path} has block_size {block}, "
                        "which leaves no room for a completion")
    room = block - len(ids)  # decoding stops at block_size, so prompt + completion always fits
    limit = room if run.task.end_id is not None else min(tokens, room)
    completion = run.complete([prompt], max_new_tokens=limit)[0]
    ids = ids + run.task.vocab.encode(completion)
    chars, lens = field_strings([prompt + completion])
    pos = rendered_positions(run.task, run.model.config, Rendered(chars, np.array([len(prompt)]), lens))
    return AttentionMaps(list(prompt + completion), len(prompt), record_attention(run.model, ids, None if pos is None else pos[0]))


def attention_maps(run_path: Path, prompt: str, checkpoint: str = "ckpt.pt", device: str = "auto",
                   tokens: int = 32, trust_code: bool = False) -> AttentionMaps:
    """Load a run and record its attention over prompt + greedy completion."""
    run = load_run(run_path, device=device, checkpoint=checkpoint, trust_code=trust_code)
    maps = attention_of(run, prompt, tokens)
    maps.source = f"{Path(run_path).name}, {checkpoint} step {run.step}"
    return maps


def maps_json(maps: AttentionMaps) -> str:
    """tokens, prompt_len and weights[layer][head][query][key] rounded to 4 decimals."""
    weights = np.round(maps.weights.astype(np.float64), 4)  # float64 first: 0.1234, not 0.12340000271
    return json.dumps({"source": maps.source, "tokens": maps.tokens, "prompt_len": maps.prompt_len,
                       "axes": ["layer", "head", "query", "key"], "weights": weights.tolist()}) + "\n"


def tick_label(ch: str) -> str:
    """A token as a tick label: whitespace made visible, '$' kept out of matplotlib's mathtext."""
    return {" ": "␣", "\n": "\\n", "\t": "\\t", "$": r"\$"}.get(ch, ch)


def maps_image(maps: AttentionMaps, dpi: int = 100) -> bytes | None:
    """PNG bytes: L rows x H columns of heatmaps, query tokens down, key tokens across.  Dashed
    lines and red tick labels mark the completion.  None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    L, H, T, _ = maps.weights.shape
    side = max(2.0, 0.17 * T)  # inches per panel: room for one tick label per token
    fig, axes = plt.subplots(L, H, figsize=(side * H + 0.8, side * L + 0.7), squeeze=False, layout="constrained")
    labels = [tick_label(c) for c in maps.tokens]
    font = max(4, min(8, int(150 / T)))
    im = None
    for (layer, head), ax in np.ndenumerate(axes):
        im = ax.imshow(maps.weights[layer, head], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(T), labels, fontsize=font)
        ax.set_yticks(range(T), labels, fontsize=font)
        ax.tick_params(length=0, pad=1.5)
        for tick in ax.get_xticklabels()[maps.prompt_len:] + ax.get_yticklabels()[maps.prompt_len:]:
            tick.set_color("tab:red")
        if 0 < maps.prompt_len < T:  # the prompt ends between these rows and columns
            ax.axhline(maps.prompt_len - 0.5, color="w", lw=0.7, ls="--")
            ax.axvline(maps.prompt_len - 0.5, color="w", lw=0.7, ls="--")
        ax.set_title(f"layer {layer} head {head}", fontsize=8)
    title = (f"attention over {maps.prompt!r} + completion {maps.completion!r} (red)\n"
             f"row: query token, which predicts the next one; column: key token    {maps.source}")
    fig.suptitle(title.replace("$", r"\$"), fontsize=8)  # two '$' would start mathtext
    fig.colorbar(im, ax=axes, shrink=0.6, pad=0.02, label="weight")
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def write_maps(maps: AttentionMaps, out: Path, fmt: str) -> None:
    if fmt == "json":
        write_output(out, maps_json(maps), "--out")
        return
    image = maps_image(maps)
    if image is None:
        raise UserError(f"--format png needs matplotlib: {install_hint('plot')}")
    write_output(out, image, "--out")


def attention_command(run_path: Path, prompt: str, checkpoint: str, out: Path | None, fmt: str | None,
                      device: str, tokens: int, trust_code: bool = False) -> tuple[Path, AttentionMaps]:
    """`workbench attention`: check the output first, then load, record and write; -> (file, maps)."""
    fmt, out = output_choice(fmt, out)
    check_output(out, "--out")
    maps = attention_maps(run_path, prompt, checkpoint, device, tokens, trust_code)
    write_maps(maps, out, fmt)
    return out, maps
