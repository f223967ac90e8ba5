"""The background process: JSON progress lines, errors, and a cancel that kills the tree."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from NimosefSlicerLib import runner

CHILD = textwrap.dedent("""
    import json, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print("loading torch", flush=True)
    for k in range(3):
        print(json.dumps({"stage": "fit", "fraction": k / 2, "message": f"step {k}"}),
              flush=True)
    print("GRANDCHILD", grandchild.pid, flush=True)
    time.sleep(120)
""")


def test_parse_progress_line():
    e = runner.parse_progress_line('{"stage": "fit", "fraction": 0.25, "message": "step 5"}')
    assert e == runner.ProgressEvent("fit", 0.25, "step 5")
    assert runner.parse_progress_line('{"stage": "x", "fraction": 7}').fraction == 1.0
    assert runner.parse_progress_line("INFO loading") is None
    assert runner.parse_progress_line('{"other": 1}') is None
    assert runner.parse_progress_line("{not json") is None


def test_command_lines_follow_the_engine_contract(tmp_path):
    opts = runner.SegmentTrackOptions(res_factor_z=3, device="cpu", quality="fast",
                                      prior="/p/prior.pt", seed=4)
    args = runner.segment_track_args(tmp_path / "in.nii.gz", tmp_path / "out", opts)
    assert args[:2] == ["segment-track", str(tmp_path / "in.nii.gz")]
    pairs = dict(zip(args[2::1], args[3::1], strict=False))
    assert pairs["--out"] == str(tmp_path / "out") and pairs["--res-factor-z"] == "3"
    assert pairs["--device"] == "cpu" and pairs["--quality"] == "fast"
    assert pairs["--progress"] == "json" and pairs["--prior"] == "/p/prior.pt"
    assert pairs["--seed"] == "4" and "--overwrite" in args
    assert "--no-refine" not in args
    unrefined = runner.SegmentTrackOptions(refine=False)
    assert runner.segment_track_args("in", "out", unrefined)[-1] == "--no-refine"
    assert runner.resample_args("o/subject.nimosef", 4, "r") == \
        ["resample", "o/subject.nimosef", "--res-factor-z", "4", "--out", "r",
         "--progress", "json"]
    assert runner.resample_args("o/subject.nimosef", 4, "r", 7)[-2:] == ["--first-frame", "7"]
    # a subject fitted with another prior is resampled with it (never a path the file records)
    assert runner.resample_args("o/subject.nimosef", 4, "r", None, "/p/prior.pt")[-2:] == \
        ["--prior", "/p/prior.pt"]
    assert runner.engine_command("py", "resample")[:3] == ["py", "-m", "nimosef_engine"]
    env = runner.engine_env(tmp_path)
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path)
    with pytest.raises(ValueError, match="z-resolution"):
        runner.SegmentTrackOptions(res_factor_z=5)
    with pytest.raises(ValueError, match="device"):
        runner.SegmentTrackOptions(device="tpu")
    with pytest.raises(ValueError, match="quality"):
        runner.SegmentTrackOptions(quality="best")


def test_progress_events_arrive_without_blocking():
    proc = runner.EngineProcess([sys.executable, "-c", CHILD]).start()
    try:
        events = []
        deadline = time.monotonic() + 30
        while len(events) < 3 and time.monotonic() < deadline:
            events += proc.poll()  # returns at once, possibly empty
            time.sleep(0.02)
        assert [e.fraction for e in events] == [0.0, 0.5, 1.0]
        assert events[1].message == "step 1" and events[0].stage == "fit"
        assert "loading torch" in proc.log
        assert "loading torch" in proc.new_log_lines()  # the log panel's feed...
        assert "loading torch" not in proc.new_log_lines()  # ...gets each line once
        assert proc.running
    finally:
        proc.cancel()
        proc.wait_stopped()


def test_cancel_kills_the_whole_process_tree():
    proc = runner.EngineProcess([sys.executable, "-c", CHILD]).start()
    deadline = time.monotonic() + 30
    grandchild = None
    while grandchild is None and time.monotonic() < deadline:
        proc.poll()
        for line in list(proc.log):
            if line.startswith("GRANDCHILD"):
                grandchild = int(line.split()[1])
        time.sleep(0.02)
    assert grandchild is not None
    assert grandchild in runner.child_pids(proc.pid)
    assert runner.process_alive(grandchild) and runner.process_alive(proc.pid)
    start = time.monotonic()
    proc.cancel(grace_s=1.0)
    assert time.monotonic() - start < 0.5, "cancel() blocked the caller"
    assert proc.wait_stopped(10)
    assert set(proc.signalled) >= {proc.pid, grandchild}
    deadline = time.monotonic() + 10
    while runner.process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runner.process_alive(proc.pid)
    assert not runner.process_alive(grandchild)
    assert time.monotonic() - start < 10
    assert proc.cancelled and proc.returncode is not None


def test_failure_gives_the_one_line_error():
    code = ("import sys; print('Traceback-free log', file=sys.stderr); "
            "print('nimosef segment-track: error: in.nii.gz: file not found', file=sys.stderr);"
            " sys.exit(2)")
    proc = runner.EngineProcess([sys.executable, "-c", code]).start()
    assert proc.wait(timeout_s=30) == 2
    assert proc.error_message() == "nimosef segment-track: error: in.nii.gz: file not found"


def test_wait_times_out_and_kills(tmp_path):
    proc = runner.EngineProcess([sys.executable, "-c", "import time; time.sleep(60)"]).start()
    with pytest.raises(TimeoutError):
        proc.wait(timeout_s=0.5)
    assert not runner.process_alive(proc.pid)


def test_json_progress_from_the_real_engine_reporter():
    """The engine's own JsonLinesReporter, in a child process, read by the runner."""
    code = ("from nimosef_engine.core.progress import JsonLinesReporter\n"
            "r = JsonLinesReporter()\n"
            "r.update('fit', 0.5, 'half')\nr.update('mesh', 1.0, 'done')\n")
    proc = runner.EngineProcess([sys.executable, "-c", code]).start()
    events = []
    assert proc.wait(events.append, timeout_s=60) == 0
    assert events == [runner.ProgressEvent("fit", 0.5, "half"),
                      runner.ProgressEvent("mesh", 1.0, "done")]
    assert json.loads(json.dumps(events[0].__dict__))["stage"] == "fit"


STUBBORN = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignores the polite stop
    print("READY", flush=True)
    time.sleep(120)
""")


def test_cancel_returns_at_once_even_when_the_child_ignores_sigterm(tmp_path):
    """The GUI's cancel: the call returns in well under 0.5 s; the child, which ignores
    SIGTERM, is killed after the grace period in the background, and then ``on_stopped``
    (the work-folder removal) runs."""
    work = tmp_path / "work"
    work.mkdir()
    proc = runner.EngineProcess([sys.executable, "-c", STUBBORN]).start()
    deadline = time.monotonic() + 30
    while "READY" not in proc.log and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "READY" in proc.log
    import shutil

    start = time.perf_counter()
    proc.cancel(grace_s=1.0, on_stopped=lambda: shutil.rmtree(work))
    held = time.perf_counter() - start
    print(f"cancel() held the caller {1000 * held:.1f} ms")
    assert held < 0.5
    assert runner.process_alive(proc.pid) and not proc.finished()  # still in its grace
    assert proc.wait_stopped(15)
    assert not runner.process_alive(proc.pid) and proc.finished()
    assert not work.exists()


def test_windows_children_get_no_console_window():
    kwargs = runner.popen_platform_kwargs("win32")
    assert kwargs["creationflags"] & runner.WIN_CREATE_NO_WINDOW
    assert kwargs["creationflags"] & runner.WIN_CREATE_NEW_PROCESS_GROUP
    # the constants are the documented Windows values (subprocess has them on Windows only)
    assert runner.WIN_CREATE_NO_WINDOW == getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
    assert runner.WIN_CREATE_NEW_PROCESS_GROUP == getattr(subprocess,
                                                          "CREATE_NEW_PROCESS_GROUP", 0x200)
    assert runner.popen_platform_kwargs("linux") == {"start_new_session": True}
