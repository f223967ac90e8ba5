"""Run the engine CLI in a background process: JSON progress lines in, cancel kills the tree.

The engine runs in its own process (PythonSlicer in the app, any Python in tests) so that the
GUI stays responsive and a cancel can stop it at once. Progress comes as one JSON object per
stdout line (``{"stage", "fraction", "message"}``, DESIGN.md); reader threads collect it and
:meth:`EngineProcess.poll` hands it over without blocking (the widget calls it from a timer).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")
QUALITIES = ("fast", "standard", "thorough")
RES_FACTORS = (1, 2, 3, 4)
DRAIN_S = 2.0  # how long finished() waits for the output of an exited child
WIN_CREATE_NEW_PROCESS_GROUP = 0x00000200  # subprocess.CREATE_NEW_PROCESS_GROUP
WIN_CREATE_NO_WINDOW = 0x08000000  # subprocess.CREATE_NO_WINDOW (Windows only in subprocess)


class EngineError(RuntimeError):
    """The engine process failed; the message is its one-line error (or the exit status)."""


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: ``stage`` name, ``fraction`` of it done (0..1), ``message``."""

    stage: str
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class SegmentTrackOptions:
    """User choices for ``segment-track``; ``prior`` None means the bundled prior."""

    res_factor_z: int = 2
    device: str = "auto"
    quality: str = "standard"
    prior: str | None = None
    seed: int | None = 0
    refine: bool = True  # label maps refined by the image (engine default)

    def __post_init__(self):
        if int(self.res_factor_z) not in RES_FACTORS:
            raise ValueError(f"z-resolution factor must be one of {RES_FACTORS}, "
                             f"got {self.res_factor_z}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, got {self.quality!r}")


def engine_command(python: str, *args: str) -> list[str]:
    """``python -m nimosef_engine ARGS...``."""
    return [str(python), "-m", "nimosef_engine", *[str(a) for a in args]]


def segment_track_args(input_path: str | Path, out_dir: str | Path,
                       options: SegmentTrackOptions) -> list[str]:
    """Arguments of ``nimosef segment-track`` with JSON progress."""
    args = ["segment-track", str(input_path), "--out", str(out_dir),
            "--res-factor-z", str(int(options.res_factor_z)), "--device", options.device,
            "--quality", options.quality, "--progress", "json", "--overwrite"]
    if options.prior:
        args += ["--prior", str(options.prior)]
    if options.seed is not None:
        args += ["--seed", str(int(options.seed))]
    if not options.refine:
        args.append("--no-refine")
    return args


def resample_args(subject_file: str | Path, res_factor_z: int, out_dir: str | Path,
                  first_frame: int | None = None, prior: str | None = None) -> list[str]:
    """Arguments of ``nimosef resample`` (re-sample the fitted subject, no fitting) with JSON
    progress; ``first_frame``: the frame to sample and announce (``preview``) first; ``prior``:
    the prior the subject was fitted with, if not the bundled one (the engine never follows a
    path recorded in the subject file)."""
    args = ["resample", str(subject_file), "--res-factor-z", str(int(res_factor_z)),
            "--out", str(out_dir), "--progress", "json"]
    if first_frame is not None:
        args += ["--first-frame", str(int(first_frame))]
    if prior:
        args += ["--prior", str(prior)]
    return args


def engine_env(engine_parent: str | Path | None) -> dict[str, str]:
    """The environment for the child: ``engine_parent`` (the folder that holds the
    ``nimosef_engine`` package) first on ``PYTHONPATH``, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if engine_parent:
        parts = [str(engine_parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p]
        env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def parse_progress_line(line: str) -> ProgressEvent | None:
    """A JSON progress line -> event; anything else -> None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "stage" not in obj or "fraction" not in obj:
        return None
    try:
        fraction = min(max(float(obj["fraction"]), 0.0), 1.0)
    except (TypeError, ValueError):
        return None
    return ProgressEvent(str(obj["stage"]), fraction, str(obj.get("message", "")))


def child_pids(pid: int) -> list[int]:
    """All descendants of ``pid`` (children first), from ``ps`` (Linux, macOS)."""
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True,
                             check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    children: dict[int, list[int]] = {}
    for row in out.splitlines():
        fields = row.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(fields[0]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    if Path("/proc/self/stat").exists():  # Linux: read the state, zombies included
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def popen_platform_kwargs(platform: str | None = None) -> dict:
    """``subprocess.Popen`` options for the engine child: on Windows a new process group
    and no console window (``CREATE_NO_WINDOW``, as ``slicer.util.launchConsoleProcess``
    does), elsewhere a new session (so the tree can be found and signalled)."""
    if (platform or sys.platform) == "win32":
        return {"creationflags": WIN_CREATE_NEW_PROCESS_GROUP | WIN_CREATE_NO_WINDOW}
    return {"start_new_session": True}


def terminate_process_tree(pid: int) -> list[int]:
    """SIGTERM to ``pid`` and every descendant (listed first, so orphans are not lost);
    the engine then cancels cleanly. Returns the pids signalled. Returns at once."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True,
                       check=False, creationflags=WIN_CREATE_NO_WINDOW)
        return [pid]
    pids = [pid] + child_pids(pid)
    for p in pids:
        _signal(p, signal.SIGTERM)
    return pids


def kill_after_grace(pid: int, pids: list[int], grace_s: float = 2.0) -> list[int]:
    """Wait up to ``grace_s`` for ``pids`` to exit, catching children that ``pid`` started
    meanwhile, then SIGKILL what is left. Returns every pid seen. Blocks: run it in a
    background thread."""
    if sys.platform == "win32":
        return pids
    pids = list(pids)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(process_alive(p) for p in pids):
        pids += [c for c in child_pids(pid) if c not in pids]
        time.sleep(0.05)
    for p in pids:
        if process_alive(p):
            _signal(p, signal.SIGKILL)
    return pids


def kill_process_tree(pid: int, grace_s: float = 2.0) -> list[int]:
    """Stop ``pid`` and every descendant: SIGTERM, SIGKILL after ``grace_s`` (blocking).
    Returns the pids that were signalled."""
    return kill_after_grace(pid, terminate_process_tree(pid), grace_s)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class EngineProcess:
    """One engine command in a child process, read without blocking the caller."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, log_lines: int = 200):
        self.args = list(args)
        self.env = env
        self.cwd = None if cwd is None else str(cwd)
        self.process: subprocess.Popen | None = None
        self.cancelled = False
        self._events: queue.Queue[ProgressEvent] = queue.Queue()
        self.log: deque[str] = deque(maxlen=log_lines)
        self.stderr: deque[str] = deque(maxlen=log_lines)
        self._threads: list[threading.Thread] = []
        self._exited_at: float | None = None
        self._reaper: threading.Thread | None = None
        self.signalled: list[int] = []
        self._log_queue: queue.Queue[str] = queue.Queue()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> EngineProcess:
        """Start the child in its own session / process group, with no console window on
        Windows (:func:`popen_platform_kwargs`)."""
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=self.env, cwd=self.cwd, text=True, encoding="utf-8", errors="replace",
            bufsize=1, **popen_platform_kwargs())
        for stream, handler in ((self.process.stdout, self._on_stdout),
                                (self.process.stderr, self._on_stderr)):
            thread = threading.Thread(target=self._read, args=(stream, handler), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @staticmethod
    def _read(stream, handler) -> None:
        for line in iter(stream.readline, ""):
            handler(line.rstrip("\n"))
        stream.close()

    def _on_stdout(self, line: str) -> None:
        event = parse_progress_line(line)
        if event is None:
            if line.strip():
                self._log(line)
        else:
            self._events.put(event)

    def _on_stderr(self, line: str) -> None:
        if line.strip():
            self.stderr.append(line)
            self._log(line)

    def _log(self, line: str) -> None:
        self.log.append(line)
        self._log_queue.put(line)

    def new_log_lines(self) -> list[str]:
        """Log lines (stdout that is not progress, and stderr) received since the last call;
        never blocks."""
        lines = []
        while True:
            try:
                lines.append(self._log_queue.get_nowait())
            except queue.Empty:
                return lines

    def poll(self) -> list[ProgressEvent]:
        """Progress events received since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def finished(self) -> bool:
        """True once the child has exited and its output has been read (or, when a
        grandchild keeps the pipes open, :data:`DRAIN_S` after the exit). Never blocks."""
        if self.process is None or self.process.poll() is None:
            return False
        if self._exited_at is None:
            self._exited_at = time.monotonic()
        if any(t.is_alive() for t in self._threads) and \
                time.monotonic() - self._exited_at < DRAIN_S:
            return False
        return self._reaper is None or not self._reaper.is_alive()

    def cancel(self, grace_s: float = 2.0, on_stopped=None) -> None:
        """Stop the child and all its descendants without blocking the caller: SIGTERM to the
        whole tree now, SIGKILL to what is left after ``grace_s``, in a background thread,
        which then calls ``on_stopped()`` (e.g. to remove a work folder). :meth:`finished`
        turns True once the tree is gone; :meth:`wait_stopped` blocks for it."""
        self.cancelled = True
        if self.process is None or self.process.poll() is not None:
            if on_stopped is not None:
                on_stopped()
            return
        pids = terminate_process_tree(self.process.pid)
        self.signalled = pids

        def reap() -> None:
            self.signalled = kill_after_grace(self.process.pid, pids, grace_s)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            if on_stopped is not None:
                on_stopped()

        self._reaper = threading.Thread(target=reap, daemon=True)
        self._reaper.start()

    def wait_stopped(self, timeout_s: float = 30.0) -> bool:
        """Block until a cancelled child and its tree are gone and its output is read, so
        that :meth:`finished` holds (tests, scripts)."""
        if self._reaper is not None:
            self._reaper.join(timeout_s)
            for t in self._threads:  # readers end at the pipes' EOF, or DRAIN_S after exit
                t.join(DRAIN_S)
            return not self._reaper.is_alive()
        return self.process is None or self.process.poll() is not None

    def error_message(self) -> str:
        """The child's last error line (the CLI prints one), or its exit status."""
        for line in reversed(self.stderr):
            if "error" in line.lower() or line.startswith("nimosef"):
                return line.strip()
        if self.stderr:
            return self.stderr[-1].strip()
        return f"the engine exited with status {self.returncode}"

    def wait(self, progress_callback=None, timeout_s: float | None = None,
             poll_s: float = 0.1) -> int:
        """Block until the child exits, forwarding events to ``progress_callback(event)``.

        Raises TimeoutError (after killing the tree) when ``timeout_s`` passes.
        """
        start = time.monotonic()
        while not self.finished():
            for event in self.poll():
                if progress_callback:
                    progress_callback(event)
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                self.cancel()
                self.wait_stopped()
                raise TimeoutError(f"{' '.join(self.args[:4])} ran past {timeout_s} s")
            time.sleep(poll_s)
        for event in self.poll():
            if progress_callback:
                progress_callback(event)
        return int(self.returncode)
