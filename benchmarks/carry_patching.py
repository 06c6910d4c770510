"""Which head carries in an addition run: activation patching through TransformerLens, beside
what the run's own attention reads.

    python benchmarks/carry_patching.py RUN [--pairs N] [--seed S] [--out FIGURE.png]

For each answer place i >= 1 (tens, hundreds, thousands of 3-digit addition), N pairs of problems:
a clean one whose place i - 1 carries into i, and a corrupted one that differs only in the two
digits of place i - 1, chosen so that nothing carries yet the answer digit of place i - 1 is the
same (8+7 becomes 1+4: 15 and 5 both write 5).  Both sequences are the same up to the position
that predicts answer digit i, where they want different digits (clean one more).

Patching: run the corrupted sequences, with one head's output (its z, before W_O) at that one
position replaced by the clean run's, and measure the logit difference (clean digit - corrupted
digit) there.  A head's effect is how much of the clean-corrupted gap it restores: 1 is all of
it, 0 nothing.  Attention: the weight that position puts on the two operand digits of place
i - 1 in the run's own forward pass (GPT.forward(attention=[]), what `workbench attention` draws).
The head that restores the carry should be the head that reads the place below.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.errors import UserError
from experiments.load import Run, load_run
from experiments.outputs import check_output, write_output
from experiments.plots import pyplot


@dataclass
class Pairs:
    clean: torch.Tensor  # (N, T) token ids: prompt + answer, place - 1 carrying into place
    corrupt: torch.Tensor  # (N, T) the same but for place - 1's two operand digits: no carry
    pos: int  # the position that predicts answer digit `place` (same tokens up to here in both)
    good: torch.Tensor  # (N,) the clean answer digit's token id
    bad: torch.Tensor  # (N,) the corrupted one's
    lower: tuple[int, int]  # positions of place - 1's digits in the first and second operand


@dataclass
class CarryHeads:
    patching: np.ndarray  # (L, H): share of the logit difference restored, averaged over the places
    attention: np.ndarray  # (L, H): attention weight on the place below, averaged over the places
    places: int

    @property
    def patched_head(self) -> tuple[int, int]:
        return tuple(int(i) for i in np.unravel_index(self.patching.argmax(), self.patching.shape))

    @property
    def attending_head(self) -> tuple[int, int]:
        return tuple(int(i) for i in np.unravel_index(self.attention.argmax(), self.attention.shape))


def digits_of(run: Run) -> int:
    """The run's operand width, refusing a layout this example does not read (it finds digits by
    their fixed places: zero-padded operands written high digit first, the answer reversed)."""
    cfg = run.task.config
    want = dict(zero_pad=True, reverse_answer=True, reverse_operands=False, delimiters=False, index_hints=False)
    wrong = [f"task.{k}={getattr(cfg, k, None)}" for k, v in want.items() if getattr(cfg, k, None) != v]
    if run.task.name != "addition" or wrong or run.model.config.pos not in ("learned", "none", "rope"):
        raise UserError(f"run {run.path}: the carry example reads the default addition layout (zero-padded, "
                        f"answer reversed, learned, rope or no positions); not {', '.join(wrong) or 'this run'}")
    return cfg.max_digits


def carry_pairs(run: Run, place: int, n: int, rng: np.random.Generator) -> Pairs:
    """n clean/corrupted pairs for answer place `place` (1 .. digits): see the module's docstring."""
    D = digits_of(run)
    a, b = rng.integers(0, 10, (2, n, D))  # little-endian digits
    j = place - 1
    t = rng.integers(10, 19, n)  # clean a_j + b_j: always carries, whatever comes from below
    a[:, j] = rng.integers(t - 9, 10)
    b[:, j] = t - a[:, j]
    a2, b2 = a.copy(), b.copy()
    a2[:, j] = rng.integers(0, t - 10 + 1)  # corrupted: t - 10, the same digit written, no carry
    b2[:, j] = t - 10 - a2[:, j]
    scale = 10 ** np.arange(D)
    numbers = [(x @ scale, y @ scale) for x, y in ((a, b), (a2, b2))]
    seqs, digits = [], []
    for x, y in numbers:
        r = run.task.render(run.task.problems_from_prompts([f"{p}+{q}" for p, q in zip(x, y)]))
        seqs.append([r.prompt(i) + r.target(i) for i in range(n)])
        digits.append((x + y) // 10**place % 10)
    P = int(r.prompt_len[0])  # every prompt is as long: zero-padded
    vocab = run.task.vocab
    clean, corrupt = (torch.tensor([vocab.encode(s) for s in ss], device=run.device) for ss in seqs)
    assert torch.equal(clean[:, P + j], corrupt[:, P + j]), "place - 1 must write one digit in both"
    good, bad = (torch.tensor([vocab.stoi[str(d)] for d in ds], device=run.device) for ds in digits)
    return Pairs(clean, corrupt, P + j, good, bad, (D - 1 - j, 2 * D - j))


def logit_diff(logits: torch.Tensor, pairs: Pairs) -> torch.Tensor:
    rows = torch.arange(len(pairs.good))
    at = logits[rows, pairs.pos]
    return at[rows, pairs.good] - at[rows, pairs.bad]


@torch.no_grad()
def head_patching(hooked, pairs: Pairs) -> np.ndarray:
    """(L, H): the share of the clean - corrupted logit difference that patching each head's
    clean output into the corrupted run (at pairs.pos only) restores."""
    cfg = hooked.cfg
    _, cache = hooked.run_with_cache(pairs.clean, names_filter=lambda name: name.endswith("hook_z"))
    clean, corrupt = logit_diff(hooked(pairs.clean), pairs), logit_diff(hooked(pairs.corrupt), pairs)
    gap = (clean - corrupt).mean()
    effect = np.zeros((cfg.n_layers, cfg.n_heads))
    for layer in range(cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"  # (N, T, H, D): each head's output before W_O
        for head in range(cfg.n_heads):
            def patch(z, hook, head=head):
                z[:, pairs.pos, head] = cache[hook.name][:, pairs.pos, head]
                return z
            patched = logit_diff(hooked.run_with_hooks(pairs.corrupt, fwd_hooks=[(name, patch)]), pairs)
            effect[layer, head] = ((patched - corrupt).mean() / gap).item()
    return effect


@torch.no_grad()
def lower_place_attention(run: Run, pairs: Pairs) -> np.ndarray:
    """(L, H): the weight pairs.pos puts on the two digits of the place below, in the run's own
    forward pass over the clean sequences (recorded as `workbench attention` records it)."""
    layers: list[torch.Tensor] = []
    run.model(pairs.clean, attention=layers)
    att = torch.stack(layers)  # (L, N, H, T, T)
    return att[:, :, :, pairs.pos, list(pairs.lower)].sum(-1).mean(1).cpu().numpy()


def carry_heads(run: Run, n: int = 200, seed: int = 0) -> CarryHeads:
    """Patching and attention per head, averaged over the answer places 1 .. digits."""
    hooked = run.to_transformer_lens()
    rng = np.random.default_rng(seed)
    places = range(1, digits_of(run) + 1)
    results = [(head_patching(hooked, p), lower_place_attention(run, p))
               for p in (carry_pairs(run, place, n, rng) for place in places)]
    return CarryHeads(np.mean([r[0] for r in results], 0), np.mean([r[1] for r in results], 0), len(places))


def table(heads: CarryHeads) -> str:
    rows = ["| head | patching: share of the carry restored | attention on the place below |", "|---|---|---|"]
    L, H = heads.patching.shape
    rows += [f"| layer {layer} head {head} | {heads.patching[layer, head]:.3f} | {heads.attention[layer, head]:.3f} |"
             for layer in range(L) for head in range(H)]
    return "\n".join(rows)


def figure(heads: CarryHeads, title: str) -> bytes:
    """Two L x H heatmaps side by side: the patching effect and the attention on the place below."""
    plt = pyplot()
    L, H = heads.patching.shape
    fig, axes = plt.subplots(1, 2, figsize=(1.3 * H * 2 + 1.5, 1.1 * L + 1.6), layout="constrained")
    panels = ((heads.patching, "patching: share of the carry's\nlogit difference restored", "RdBu", -1.0),
              (heads.attention, "attention from the predicting position\nto the two digits one place lower",
               "viridis", 0.0))
    for ax, (values, label, cmap, low) in zip(axes, panels):
        im = ax.imshow(values, cmap=cmap, vmin=low, vmax=1.0)
        for (layer, head), v in np.ndenumerate(values):
            dark = abs(v) > 0.6 if cmap == "RdBu" else v < 0.5
            ax.text(head, layer, f"{v:.2f}".replace("-0.00", "0.00"), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
        ax.set_xticks(range(H), [f"head {h}" for h in range(H)], fontsize=8)
        ax.set_yticks(range(L), [f"layer {layer}" for layer in range(L)], fontsize=8)
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--pairs", type=int, default=200, help="pairs per answer place (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="the figure, a PNG")
    args = parser.parse_args()
    try:
        if args.out is not None:
            check_output(args.out, "--out")
        run = load_run(args.run, device="cpu")
        heads = carry_heads(run, args.pairs, args.seed)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(table(heads))
    print(f"\npatching picks layer {heads.patched_head[0]} head {heads.patched_head[1]}; "
          f"attention on the place below picks layer {heads.attending_head[0]} head {heads.attending_head[1]}")
    if args.out is not None:
        title = (f"{run.path.name} (step {run.step}): {args.pairs} carry / no-carry pairs for each of answer places "
                 f"1-{heads.places}, seed {args.seed}")
        write_output(args.out, figure(heads, title), "--out")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
