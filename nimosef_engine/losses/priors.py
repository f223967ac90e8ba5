"""Priors on the subject shape code."""

from __future__ import annotations

import torch


def code_prior(code: torch.Tensor, per_code: bool = False) -> torch.Tensor:
    """Mean squared norm of the code(s): ``(C,)`` or ``(B, C)``; with ``per_code``, the
    squared norm of each code ``(B,)``."""
    sq = code.square().sum(dim=-1)
    return sq if per_code else sq.mean()
