"""How torch's CPU threads wait for work (set before torch is loaded) and how they treat
numbers too small for float32 (set before the first parallel torch operation).

libgomp (the OpenMP of torch's CPU build) lets an idle thread spin for a long while before it
sleeps. Alone on a machine that is a little faster; beside another job (a second run, Slicer's
rendering, a cohort's other workers) the spinning threads take the cores the working ones
need: two runs side by side took 4.2 times as long as one alone on 2 cores. A short spin
(``GOMP_SPINCOUNT=2000``) keeps a lone run as fast (21.9 s against 21.0 s) and two runs side
by side at 1.8 times one (``benchmarks/side_by_side.py``).

The Gabor layers' Gaussians reach float32's smallest normal numbers (about 1e-38), and their
gradients fall below it. On x86 CPUs arithmetic on such subnormal numbers takes a slow path:
the fit's backward matrix products ran several times slower than with them flushed to zero
(a fit step on an ACDC pair 0.50 against 0.18 s, the loss identical; ``benchmarks/fit_time.py
--keep-subnormals``).
A thread's flush mode is copied to the threads it starts, not to those it already has, so each
entry point (every command, :func:`pipeline.segment_track.segment_track`) runs in
:func:`subnormals` before torch starts its thread pool.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

SPIN_COUNT = "2000"  # libgomp spins this many times, then sleeps


def set_openmp_waiting(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set ``GOMP_SPINCOUNT`` in ``env`` (default: this process's environment, before torch
    is imported) unless the user chose a wait policy (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``). Returns ``env``."""
    env = os.environ if env is None else env
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["GOMP_SPINCOUNT"] = SPIN_COUNT
    return env


def flushing_subnormals() -> bool:
    """Whether this thread flushes subnormal numbers to zero (a float32 product that would be
    1e-40 comes out 0)."""
    return bool(np.float32(1e-20) * np.float32(1e-20) == 0)


@contextmanager
def subnormals(flush: bool) -> Iterator[bool]:
    """Within the block, this thread flushes float32/float64 subnormal numbers (below 1.2e-38 /
    2.2e-308) to zero (``flush``) or keeps them; the threads torch starts in the block keep
    that mode for good (they only ever run torch's work), this thread returns to its own after
    it. Yields whether the CPU supports the mode.

    Flushing is for torch's arithmetic: scipy's KD-tree (1.17) crashes on some point sets
    under it, so code outside torch runs with ``subnormals(flush=False)`` where it matters."""
    import torch

    before = flushing_subnormals()
    supported = bool(torch.set_flush_denormal(flush))
    try:
        yield supported
    finally:
        torch.set_flush_denormal(before)
