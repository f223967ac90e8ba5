"""Choosing the torch device and thread settings."""

from __future__ import annotations

import torch

from nimosef_engine.core.errors import NimosefInputError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NimosefInputError("device", "CUDA was requested but no GPU is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise NimosefInputError("device", f"unknown device {name!r} (auto, cpu, cuda)")
    return torch.device(name)
