"""`workbench card`: the README's results card, generated from the run records in docs/results/card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from experiments.card import CARD_DIR, card_in, card_markdown
from experiments.commands.options import user_errors
from experiments.errors import UserError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
@user_errors
def card(
    folder: Path = typer.Argument(CARD_DIR, help="the card's folder: rows.toml and a folder of records per row"),
    check: Optional[Path] = typer.Option(None, "--check", help="exit 1 if this file's card (README.md) differs"),
) -> None:
    """Print the results card, a markdown table generated from committed run records (--check FILE: compare)."""
    table = card_markdown(folder)
    if check is None:
        typer.echo(table, nl=False)
        return
    try:
        held = card_in(check.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"--check {check}: {e.strerror}") from None
    if held != table:
        typer.echo(f"{check}: its results card differs from `workbench card {folder}`; paste the command's output "
                   "between the card's markers", err=True)
        raise typer.Exit(1)
    typer.echo(f"{check}: the results card matches {folder}", err=True)
