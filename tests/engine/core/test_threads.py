"""Torch's threads wait briefly for work unless the user chose how, and flush subnormal
numbers to zero (core.threads)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nimosef_engine.core.threads import (
    SPIN_COUNT,
    flushing_subnormals,
    set_openmp_waiting,
    subnormals,
)


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


# 512 x 512 products of 1e-20 * 1e-20 = 1e-40, a float32 subnormal, split over torch's threads
SUBNORMAL_PROBE = ("import torch; torch.set_num_threads(2); "
                   "x = torch.full((512, 512), 1e-20); print(int(((x * 1e-20) != 0).sum()))")


def _subnormals_kept(prelude: str) -> int:
    """How many of the probe's subnormal products survive after ``prelude`` (a fresh process:
    the flush mode is per thread and inherited by the threads torch starts)."""
    out = subprocess.run([sys.executable, "-c", prelude + SUBNORMAL_PROBE],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_subnormals_are_flushed_on_every_torch_thread_started_in_the_block():
    assert _subnormals_kept("") == 512 * 512  # by default the slow numbers are kept
    assert _subnormals_kept("from nimosef_engine.core.threads import subnormals; "
                            "block = subnormals(flush=True); assert block.__enter__(); ") == 0


def test_the_calling_thread_gets_its_own_mode_back():
    assert not flushing_subnormals()
    with subnormals(flush=True):
        assert flushing_subnormals()
        with subnormals(flush=False):
            assert not flushing_subnormals()
        assert flushing_subnormals()
    assert not flushing_subnormals()


def test_commands_and_segment_track_run_with_subnormals_flushed(tmp_path, monkeypatch):
    """The command line and the Python API flush while they work, and not after."""
    from nimosef_engine import cli
    from nimosef_engine.core.errors import NimosefInputError
    from nimosef_engine.pipeline import segment_track

    seen = []

    def run(*_args):
        seen.append(flushing_subnormals())
        raise NimosefInputError("cine", "stop here")

    monkeypatch.setattr(segment_track, "_run", run)
    cine = tmp_path / "cine.nii.gz"
    cine.write_bytes(b"")
    assert cli.main(["segment-track", str(cine), "--out", str(tmp_path / "out")]) == 2
    with pytest.raises(NimosefInputError):
        segment_track.segment_track(cine, tmp_path / "out2")
    assert seen == [True, True]
    assert not flushing_subnormals()
