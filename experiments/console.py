"""Rich output on stdout: tables whose key columns are never cut, on a terminal or piped.

Everything that reaches stdout through rich goes through `stdout_console` / `print_table`, so
that piped output (`workbench tasks | grep multiplication`) never has a cell cut or folded.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# Piped stdout is read by grep, awk and people's scripts, not by a person at a terminal of known
# width: render as wide as the content needs (rich would otherwise assume 80 columns, or $COLUMNS).
PIPE_WIDTH = 1_000_000


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stdout_console(width: int | None = None) -> Console:
    """A console on stdout: the terminal's width on a terminal, unlimited when piped."""
    if not stdout_is_terminal():
        return Console(width=PIPE_WIDTH)
    return Console(width=width)


def key_column(table: Table, header: str | Text, **kw: Any) -> None:
    """A column whose cells must never be cut or wrapped (names, bucket keys, figures)."""
    table.add_column(header, no_wrap=True, **kw)


def text_column(table: Table, header: str | Text, **kw: Any) -> None:
    """A free-text column (descriptions, option lists): it wraps, and folds a long word, on a
    narrow terminal so that the key columns can stay whole."""
    table.add_column(header, overflow="fold", **kw)


FOLD_WIDTH = 12  # the narrowest a free-text column gets before a table is printed wider than the terminal


def table_min_width(table: Table) -> int:
    """The narrowest the table can be with every key column whole and every free-text column at
    least FOLD_WIDTH wide (rich's own measurement, key columns pinned to their widest cell)."""
    wide = Console(width=PIPE_WIDTH)
    folded = []
    for col in table.columns:
        if col.no_wrap:
            cells = [col.header, *col.cells] if table.show_header else list(col.cells)
            col.min_width = max(Measurement.get(wide, wide.options, c).maximum for c in cells) if cells else None
        elif col.overflow == "fold" and col.max_width is None:
            col.max_width = FOLD_WIDTH  # only while measuring: rich may fold such a column this far
            folded.append(col)
    try:
        return Measurement.get(wide, wide.options, table).minimum
    finally:
        for col in folded:
            col.max_width = None


def fits_terminal(table: Table) -> bool:
    """Whether the table fits stdout with its key columns whole (always, when piped)."""
    return not stdout_is_terminal() or table_min_width(table) <= Console().width


def print_table(table: Table) -> None:
    """Print a table so that no key column is ever cut: piped, at unlimited width; on a terminal,
    at the terminal's width, or wider when even the narrowest layout needs more (the terminal
    then wraps the lines, but rich would otherwise crop them)."""
    if not stdout_is_terminal():
        stdout_console().print(table)
        return
    stdout_console(max(Console().width, table_min_width(table))).print(table)
