"""Torch's threads wait briefly for work unless the user chose how (core.threads)."""

from __future__ import annotations

import subprocess
import sys

from nimosef_engine.core.threads import SPIN_COUNT, set_openmp_waiting


def test_a_short_spin_unless_the_user_chose_a_policy():
    assert set_openmp_waiting({}) == {"GOMP_SPINCOUNT": SPIN_COUNT}
    assert set_openmp_waiting({"OMP_WAIT_POLICY": "ACTIVE"}) == {"OMP_WAIT_POLICY": "ACTIVE"}
    assert set_openmp_waiting({"GOMP_SPINCOUNT": "0"}) == {"GOMP_SPINCOUNT": "0"}


def test_the_command_sets_it_before_torch_is_loaded():
    """The console entry sets the spin count before any command module imports torch."""
    code = ("import os, sys; from nimosef_engine import cli; "
            "cli.main = lambda: (print(os.environ.get('GOMP_SPINCOUNT'), "
            "'torch' in sys.modules), 0)[1]; cli.entry()")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [SPIN_COUNT, "False"]
