"""Stage 1 of loading a sweep spec: the file's bytes as a TOML table, and where each key is written.

parse_spec is a pure function of the file's name and bytes; read_spec reads them (never more
than MAX_SPEC_BYTES).  The SpecSource it gives keeps the text, so that the later stages
(speccheck, specexpand) name the line of whatever they refuse: `FILE:LINE: key: why`.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from experiments.errors import UserError

# A spec is a page of TOML: 4 MiB is far beyond any real one, and tomllib parses that in about a second.
MAX_SPEC_BYTES = 4 * 2**20


@dataclass(frozen=True)
class SpecSource:
    """A parsed spec file: its TOML table and its text (which places errors)."""

    path: Path
    text: str
    doc: dict[str, Any]

    @functools.cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def fail(self, key: str, msg: str, near: str = "") -> NoReturn:
        raise UserError(f"{self.path}:{self.line_of(key, near)}: {key}: {msg}")

    def line_of(self, key: str, near: str = "") -> int:
        """The line of key; with `near` (an offending string value), the first line from there on
        that holds it quoted, since a leaf such as `name` occurs in many tables."""
        first = self._line_of_key(key)
        if near:
            quoted = (f'"{near}"', f"'{near}'")
            for i, line in enumerate(self.lines[first - 1:], first):
                if any(q in line for q in quoted):
                    return i
        return first

    def _line_of_key(self, key: str) -> int:
        leaf = key.rsplit(".", 1)[-1].split("[")[0]
        for cand in (key, leaf):  # a dotted --set key as written ("model.pos" = ...), else its last part
            pat = re.compile(rf'(^|[{{,\s])"?{re.escape(cand)}"?\s*=|^\s*\[\[?{re.escape(cand)}\]\]?')
            for i, line in enumerate(self.lines, 1):
                if pat.search(line.split("#")[0]):
                    return i
        return 1


def parse_spec(path: Path, data: bytes) -> SpecSource:
    """A spec file's bytes as its TOML table; one line naming the file for bytes that are too many,
    not UTF-8 text (with its line), not TOML, or nested too deep for the parser."""
    if len(data) > MAX_SPEC_BYTES:
        raise UserError(f"{path}: larger than {MAX_SPEC_BYTES // 2**20} MiB; a spec is a short TOML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); a spec is a TOML file") from None
    try:
        return SpecSource(path, text, tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few hundred levels exhaust the
        # stack, which takes about a millisecond, so catching it is the cheap check (measured)
        raise UserError(f"{path}: arrays or inline tables nested too deep; a spec needs a few levels") from None


def read_spec(path: Path) -> SpecSource:
    """parse_spec of the file at path, read no further than one byte past MAX_SPEC_BYTES."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file not found: {path}")
    with open(path, "rb") as f:
        data = f.read(MAX_SPEC_BYTES + 1)  # never more: a huge file is refused unread
    return parse_spec(path, data)
