"""How torch's CPU threads wait for work, set before torch is loaded.

libgomp (the OpenMP of torch's CPU build) lets an idle thread spin for a long while before it
sleeps. Alone on a machine that is a little faster; beside another job (a second run, Slicer's
rendering, a cohort's other workers) the spinning threads take the cores the working ones
need: two runs side by side took 4.2 times as long as one alone on 2 cores. A short spin
(``GOMP_SPINCOUNT=2000``) keeps a lone run as fast (21.9 s against 21.0 s) and two runs side
by side at 1.8 times one (``benchmarks/side_by_side.py``).
"""

from __future__ import annotations

import os

SPIN_COUNT = "2000"  # libgomp spins this many times, then sleeps


def set_openmp_waiting(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set ``GOMP_SPINCOUNT`` in ``env`` (default: this process's environment, before torch
    is imported) unless the user chose a wait policy (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``). Returns ``env``."""
    env = os.environ if env is None else env
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["GOMP_SPINCOUNT"] = SPIN_COUNT
    return env
