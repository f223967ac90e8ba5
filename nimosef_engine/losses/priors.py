"""Priors on the subject shape code."""

from __future__ import annotations

import torch


def code_prior(code: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of the code(s): ``(C,)`` or ``(B, C)``."""
    return code.square().sum(dim=-1).mean()
