"""Table cells and markdown tables: the one way eval, report and results format them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def pct(x: float) -> str:
    """A share as a percentage with two decimals; NaN (no problems) stays visible."""
    return "nan" if x != x else f"{100 * x:.2f}%"


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table, cells already formatted (str() of anything else)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def bucket_order(value: Any) -> tuple:
    """Sort key for bucket values: numbers in numeric order, then words, then 'all' last.

    Buckets may hold numbers (digits, lengths) or words (an operator, a kind of problem)."""
    if value == "all":
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
