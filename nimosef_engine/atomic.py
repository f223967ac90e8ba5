"""Write outputs so that a crash or a cancel never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nimosef_engine.errors import NimosefInputError


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only on success.

    Works for a file or a directory created at the yielded path. On any exception the
    temporary is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.unlink(tmp_name)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        if final.is_dir() and tmp.is_dir():
            backup = final.with_name(f".{final.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(final, backup)
            os.replace(tmp, final)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_bytes(final: str | Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``final`` atomically."""
    atomic_write_bytes(final, text.encode("utf-8"))


def check_output_path(path: str | Path, folder: bool = True) -> Path:
    """Refuse, before any work, an output that could not be created; creates nothing.

    ``folder``: the output is a folder (else a file). Raises :class:`NimosefInputError` naming
    ``path`` when it exists as the wrong kind, when the nearest existing ancestor is a file, or
    when that ancestor is not writable (as root every folder is writable). Returns the path.
    """
    path = Path(path)
    if path.exists() and folder and not path.is_dir():
        raise NimosefInputError(path, "exists and is not a folder")
    if path.is_dir() and not folder:
        raise NimosefInputError(path, "is a directory, expected an output file")
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise NimosefInputError(path, f"cannot create the output: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NimosefInputError(path, f"cannot write into {parent} (permission denied)")
    return path
