"""`python -m experiments ...` is `workbench ...` (and what torchrun launches)."""

from experiments.cli import entry

entry()
