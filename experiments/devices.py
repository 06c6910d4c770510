"""`--device`: auto, cpu, cuda or mps, refused with one line when it is not there."""

from __future__ import annotations

import torch

from experiments.errors import UserError


def _mps() -> bool:
    backend = getattr(torch.backends, "mps", None)  # absent from some torch builds
    return bool(backend and backend.is_available())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps() else "cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name == "mps" and not _mps():
        raise UserError("--device mps: no MPS device is available")
    return torch.device(name)
