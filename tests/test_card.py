"""The README's results card is generated, and its links resolve.

The card is `workbench card`'s output from the run records under docs/results/card; a figure
edited by hand in the README (or a record changed without regenerating the card) fails here.
"""

import json
import re

import pytest

from experiments.card import BEGIN, CARD_DIR, END, card_in, card_markdown, read_rows
from helpers import ROOT, cli

README = ROOT / "README.md"


def test_the_readme_card_is_what_workbench_card_prints():
    held = card_in(README.read_text(encoding="utf-8"))
    assert held, f"README.md has no results card between {BEGIN!r} and {END!r}"
    assert held == card_markdown(ROOT / CARD_DIR), "regenerate it: workbench card, pasted between the markers"


def test_a_figure_edited_by_hand_fails_the_check(tmp_path, capsys):
    text = README.read_text(encoding="utf-8")
    card = card_in(text)
    figure = re.search(r"\d+\.\d\d%", card).group(0)
    edited = tmp_path / "README.md"
    edited.write_text(text.replace(card, card.replace(figure, "99.99%" if figure != "99.99%" else "99.98%", 1)))
    assert card_in(edited.read_text()) != card_markdown(ROOT / CARD_DIR)
    code, _, err = cli(capsys, "card", ROOT / CARD_DIR, "--check", edited)
    assert code == 1 and "differs" in err
    code, _, err = cli(capsys, "card", ROOT / CARD_DIR, "--check", README)
    assert code == 0 and "matches" in err


@pytest.mark.parametrize("row", read_rows(ROOT / CARD_DIR), ids=lambda r: r.run)
def test_each_row_shows_its_records(row):
    """The card's figures are the records' own: the run's preset, its eval's overall row, its step count."""
    folder = ROOT / CARD_DIR / row.run
    config = json.loads((folder / "config.json").read_text())
    whole = json.loads((folder / "eval.json").read_text())[-1]
    last = json.loads((folder / "train.json").read_text())
    line = next(l for l in card_markdown(ROOT / CARD_DIR).splitlines() if f"| {row.shows} |" in l)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:2] == [config["task"]["name"], f"`{config['preset']}`"]
    if "accuracy" in whole:  # a problem task: accuracy of the whole split, from correct / n
        assert cells[3].startswith(f"{100 * whole['correct'] / whole['n']:.2f}%") and f"of {whole['n']:,}" in cells[3]
    else:
        assert f"{whole['loss']:.3f}" in cells[3]
    assert cells[4] == f"{last['step']:,}" and last["step"] <= config["train"]["steps"]
    assert row.train.startswith("workbench train ") and f"--out {row.run}" in row.train


def test_a_row_without_its_records_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "rows.toml").write_text('[[row]]\nrun = "x"\nshows = "s"\ntrain = "t"\neval = "e"\n')
    code, _, err = cli(capsys, "card", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "missing config.json, train.json, eval.json" in err


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve()
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md":
                headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(encoding="utf-8"), re.M)}
                if anchor not in headings:
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("pool", [1, 3])
def test_show_run_counts_the_tokens_and_time_its_training_took(tmp_path, capsys, shakespeare, pool):
    """Text windows are all block_size wide, so the tokens are steps x batch x block exactly; the
    FLOPs follow from them and the parameter count (with train.hard_pool, plus the pool's scoring
    forward); the time is the last record's."""
    run = tmp_path / "run"
    code, _, _ = cli(capsys, "train", "--task", "shakespeare", "--steps", "20", "--set", "train.batch_size=4",
                     "--set", "model.block_size=12", "--set", "model.n_layer=1", "--set", "model.n_embd=16",
                     "--set", "model.n_head=2", "--set", "train.eval_interval=20", "--set", "train.eval_iters=1",
                     "--set", f"train.hard_pool={pool}", "--out", run, "--quiet", "--device", "cpu")
    assert code == 0
    code, out, _ = cli(capsys, "show", run)
    line = next(x for x in out.splitlines() if x.startswith("trained"))
    params = int(re.search(r"parameters\s+([\d,]+) unique", out).group(1).replace(",", ""))
    tokens = 20 * 4 * 12
    flops = tokens * (6 * params + 12 * 1 * 16 * 12) + (pool > 1) * tokens * pool * (2 * params + 4 * 1 * 16 * 12)
    seconds = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]["train_time"]
    assert line.startswith(f"trained     20 steps, {tokens:,} tokens (padding included), about "
                           f"{flops:.2g} FLOPs".replace("e+", "e"))
    assert line.endswith(f", {round(seconds)} s")
