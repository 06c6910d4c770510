"""Reverse a string (Karpathy's lecture suggests it as a first own-data exercise).

Worked example (alphabet "abcdefgh", lengths 1-8):

    "cabd="  ->  "dbac$"

Same options, split and bucket as `copy`.
"""

from __future__ import annotations

from typing import ClassVar

from tasks.copy import CopyTask


class ReverseTask(CopyTask):
    name: ClassVar[str] = "reverse"
    description: ClassVar[str] = "reverse a string of letters"

    def transform(self, s: str) -> str:
        return s[::-1]
