"""`--device` and a spec's `device`: auto, cpu, cuda or mps, refused with one line when it is not
one of them or not there.  The one owner of the device names: the CLI, sweep specs and training
all check them here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.errors import UserError

if TYPE_CHECKING:  # a spec's device names are checked without loading torch
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device_name(name: str) -> str:
    """One of DEVICES, or a user error listing them (whether it is there is resolve_device's)."""
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; use {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    return name


def _mps() -> bool:
    import torch  # here, not at the top: checking a name needs no torch

    backend = getattr(torch.backends, "mps", None)  # absent from some torch builds
    return bool(backend and backend.is_available())


def resolve_device(name: str) -> torch.device:
    import torch  # here, not at the top: checking a name needs no torch

    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name == "mps" and not _mps():
        raise UserError("--device mps: no MPS device is available")
    return torch.device(name)
