"""Segment-track's output folder: what it owns there, what it refuses, and its lock.

Nothing of the user's is deleted: ``--overwrite`` replaces a folder only when it holds nothing
but files segment-track writes (:data:`SEGMENT_TRACK_OUTPUTS`); a folder that holds the input,
the current folder, or any other file is refused before any work starts. The lock
(``DIR.lock`` beside the folder) keeps two runs apart; a lock left by a process that no
longer runs (killed, crashed) is taken over, and the hidden partial folder that process left
is removed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from nimosef_engine.core.atomic import check_output_path
from nimosef_engine.core.errors import NimosefInputError

log = logging.getLogger(__name__)

# Every file segment-track writes, as paths relative to its output folder (fnmatch patterns):
# a folder holding only these (and :data:`OS_FILES`) may be replaced with --overwrite.
SEGMENT_TRACK_OUTPUTS = (
    "seg.nii.gz", "seg_z*.nii.gz", "rec_z*.nii.gz", "preview_z*.nii.gz", "motion.parquet",
    "volumes.csv", "summary.json", "config.json", "report.png", "subject.nimosef",
    "meshes", "meshes/frame_*_*.vtp", "strain.csv", "motion", "motion/to_ed_*.nii.gz",
    "motion/from_ed_*.nii.gz",
)
# files a desktop's file browser leaves in folders it shows: kept, never a reason to refuse
OS_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")


def is_segment_track_output(rel: str | Path) -> bool:
    """True if ``rel`` (a path relative to the output folder) is one segment-track writes."""
    name = Path(rel).as_posix()
    return any(fnmatch.fnmatchcase(name, pat) for pat in SEGMENT_TRACK_OUTPUTS)


def foreign_entries(folder: Path) -> list[str]:
    """Paths under ``folder`` (relative, posix) that segment-track did not write."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.name in OS_FILES or is_segment_track_output(rel):
            continue
        if p.is_dir() and not p.is_symlink() and any(p.iterdir()):
            continue  # a folder is foreign through what it holds
        found.append(rel)
    return found


def check_output_folder(out_dir: str | Path, inputs: Sequence[str | Path],
                        overwrite: bool) -> Path:
    """Refuse, before any work, an output folder segment-track must not write: one that exists
    without ``overwrite``; the current folder, one that holds it, or the file-system root; one
    that is or holds an input; one with files segment-track did not write. Returns it."""
    out_dir = Path(out_dir)
    where = Path(os.path.abspath(out_dir))
    if where == Path(where.anchor):
        raise NimosefInputError(out_dir, "is the root of the file system: give a new folder "
                                         "for the outputs")
    here = Path.cwd()
    if where == here or where in here.parents:
        raise NimosefInputError(out_dir, "is the current folder (or holds it): give a new "
                                         "folder for the outputs")
    real = where.resolve()
    for inp in inputs:
        p = Path(inp).resolve()
        if p == real or real in p.parents:
            raise NimosefInputError(out_dir, f"holds the input {inp}: give another folder for "
                                             "the outputs (it would be replaced)")
    if out_dir.exists() and not overwrite:
        raise NimosefInputError(out_dir, "output folder exists: use --overwrite to replace it")
    check_output_path(out_dir)
    if out_dir.is_dir():
        foreign = foreign_entries(out_dir)
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise NimosefInputError(out_dir, f"holds files segment-track did not write "
                                             f"({', '.join(foreign[:3])}{more}): --overwrite "
                                             "replaces only its own outputs; move them or give "
                                             "another folder")
    return out_dir


# ---- the lock --------------------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie counts as dead)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel = ctypes.windll.kernel32
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            kernel.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a killed child its parent has not reaped yet
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _lock_owner(text: str) -> tuple[int | None, str | None]:
    """(pid, host) written in a lock file; a bare number (older versions) is a local pid."""
    try:
        info = json.loads(text)
    except ValueError:
        return None, None
    if isinstance(info, int):
        return info, socket.gethostname()
    if isinstance(info, dict) and isinstance(info.get("pid"), int):
        return info["pid"], info.get("host")
    return None, None


def _is_stale(text: str) -> bool:
    pid, host = _lock_owner(text)
    return pid is not None and host == socket.gethostname() and not pid_alive(pid)


def _remove_stale_lock(lock: Path, text: str) -> None:
    """Remove ``lock`` if it still holds ``text`` (a dead run's); a lock another run wrote in
    the meantime is put back."""
    grave = lock.with_name(f"{lock.name}.{uuid.uuid4().hex[:8]}.stale")
    try:
        os.replace(lock, grave)
    except FileNotFoundError:
        return  # another run took it over first
    try:
        if grave.read_text() == text:
            return
        with contextlib.suppress(FileExistsError):
            os.link(grave, lock)  # not the dead run's lock: back in place
    finally:
        grave.unlink(missing_ok=True)


def remove_partial_outputs(out_dir: Path) -> list[Path]:
    """Remove the hidden temporary folders a killed run left beside ``out_dir``
    (``.NAME.XXXXXXXX.tmp``, :func:`atomic.atomic_path`); call only while holding the lock."""
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.[a-z0-9_]{{8}}\.tmp$")
    removed = []
    if out_dir.parent.is_dir():
        for p in out_dir.parent.iterdir():
            if pattern.match(p.name):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    return removed


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Refuse a second concurrent run into ``out_dir`` (``DIR.lock`` created exclusively,
    holding this process's id and host). A lock whose process no longer runs here is taken
    over. Folders created for the lock are removed again if the run leaves them empty."""
    out_dir = Path(out_dir)
    lock = out_dir.with_name(out_dir.name + ".lock")
    created = []
    parent = lock.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    lock.parent.mkdir(parents=True, exist_ok=True)
    owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    try:
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                try:
                    text = lock.read_text()
                except FileNotFoundError:
                    continue
                if not _is_stale(text):
                    raise NimosefInputError(out_dir, f"another segment-track run is writing "
                                                     f"here (lock file {lock}); wait for it, or "
                                                     "remove the lock if that run died on "
                                                     "another machine") from None
                log.warning("taking over %s, left by a run that no longer runs", lock)
                _remove_stale_lock(lock, text)
        else:
            raise NimosefInputError(out_dir, f"could not take the lock {lock}")
        try:
            os.write(fd, owner.encode())
        finally:
            os.close(fd)
        try:
            for p in remove_partial_outputs(out_dir):
                log.warning("removed %s, the partial output of a run that was stopped", p)
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
    finally:
        for p in created:
            with contextlib.suppress(OSError):
                p.rmdir()
