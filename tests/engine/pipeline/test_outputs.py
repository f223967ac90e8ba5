"""Nothing of the user's is deleted, and a killed run does not block the next (issue 18):
folder replacement keeps what the new output does not replace, segment-track's --overwrite
refuses folders with others' files, and a dead run's lock and partial folder are taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nimosef_engine.core.atomic import atomic_path
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.pipeline.outputs import (
    check_output_folder,
    is_segment_track_output,
    output_lock,
    pid_alive,
)

CINE = Path(__file__).resolve().parents[2] / "data" / "acdc" / "patient090" / \
    "patient090_4d.nii.gz"


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_folder_written_over_another_keeps_what_it_does_not_replace(tmp_path):
    out = tmp_path / "out"
    (out / "meshes").mkdir(parents=True)
    (out / "seg_z4.nii.gz").write_text("old output")
    (out / "meshes" / "frame_29_LV.vtp").write_text("old mesh")
    (out / "summary.json").write_text("old summary")
    (out / "notes.txt").write_text("the user's")
    (out / "mine").mkdir()
    (out / "mine" / "a.csv").write_text("the user's too")
    with atomic_path(out, is_segment_track_output) as tmp:
        (tmp / "meshes").mkdir(parents=True)
        (tmp / "meshes" / "frame_00_LV.vtp").write_text("new mesh")
        (tmp / "summary.json").write_text("new summary")
    # the job's own earlier outputs are replaced or gone; everything else is still there
    assert _tree(out) == {"meshes/frame_00_LV.vtp": "new mesh", "summary.json": "new summary",
                          "notes.txt": "the user's", "mine/a.csv": "the user's too"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # without a rule, nothing of the old folder goes but what the new one replaces
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "summary.json").write_text("newer")
    assert _tree(out)["notes.txt"] == "the user's" and _tree(out)["summary.json"] == "newer"
    assert "meshes/frame_00_LV.vtp" in _tree(out)


def test_overwrite_refuses_the_input_the_current_folder_and_others_files(tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "res"
    out.mkdir()
    (out / "seg.nii.gz").write_text("x")
    (out / ".DS_Store").write_text("x")
    assert check_output_folder(out, [CINE], overwrite=True) == out
    with pytest.raises(NimosefInputError, match="use --overwrite"):
        check_output_folder(out, [CINE], overwrite=False)
    (out / "meshes" / "extra").mkdir(parents=True)
    (out / "meshes" / "extra" / "x.txt").write_text("x")
    with pytest.raises(NimosefInputError, match=r"did not write \(meshes/extra/x.txt\)"):
        check_output_folder(out, [CINE], overwrite=True)
    with pytest.raises(NimosefInputError, match="holds the input"):
        check_output_folder(CINE.parent, [CINE], overwrite=True)
    with pytest.raises(NimosefInputError, match="holds the input"):
        check_output_folder(CINE.parents[2], [CINE], overwrite=True)
    for here in (".", str(tmp_path), str(tmp_path.parent)):
        with pytest.raises(NimosefInputError, match="current folder"):
            check_output_folder(here, [CINE], overwrite=True)
    with pytest.raises(NimosefInputError, match="root of the file system"):
        check_output_folder("/", [CINE], overwrite=True)


def test_a_live_lock_refuses_a_dead_one_is_taken_over(tmp_path):
    out = tmp_path / "out"
    lock = tmp_path / "out.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(NimosefInputError, match="another segment-track run"), \
            output_lock(out):
        pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not pid_alive(dead.pid)
    lock.write_text(str(dead.pid))  # the older format: a bare pid
    partial = tmp_path / ".out.abcd1234.tmp"
    (partial / "meshes").mkdir(parents=True)
    other = tmp_path / ".out.x.abcd1234.tmp"  # the partial folder of a run into "out.x"
    other.mkdir()
    with output_lock(out):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert not partial.exists() and other.exists()
    assert not lock.exists()


def test_a_lock_makes_no_folder_it_leaves_behind(tmp_path):
    with pytest.raises(RuntimeError), output_lock(tmp_path / "a" / "b" / "out"):
        assert (tmp_path / "a" / "b" / "out.lock").exists()
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []


def test_after_sigkill_the_next_run_takes_over(tmp_path):
    """A segment-track killed hard mid-fit leaves its lock and hidden partial folder; the next
    run into the same folder takes the lock over and removes the partial folder."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimosef_engine", "segment-track", str(CINE), "--out", str(out),
         "--quality", "fast", "--fit-steps", "100000", "--device", "cpu", "--progress",
         "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stdout:
        if json.loads(line)["stage"] == "fit":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert "out.lock" in left and any(n.startswith(".out.") and n.endswith(".tmp") for n in left)
    deadline = time.monotonic() + 10
    while pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with output_lock(out):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.lock"]
    assert list(tmp_path.iterdir()) == []
