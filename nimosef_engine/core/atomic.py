"""Write outputs so that a crash or a cancel never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from nimosef_engine.core.errors import NimosefInputError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(final: str | Path,
                replaces: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only on success.

    Works for a file or a directory created at the yielded path. On any exception the
    temporary is removed and ``final`` is untouched. A folder written over an existing folder
    takes its place and keeps every entry of the old one it does not replace (nothing of the
    user's is lost), except those ``replaces(relative_path)`` says are earlier outputs of the
    same job, which go (:func:`replace_folder`).
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
            replace_folder(final, tmp, replaces)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def replace_folder(final: Path, new: Path,
                   replaces: Callable[[Path], bool] | None = None) -> None:
    """Put the folder ``new`` in the place of the folder ``final`` (two renames), then move
    back into it every entry of the old folder that ``new`` has no entry for, except files for
    which ``replaces(path relative to final)`` is true (earlier outputs of the same job). An
    entry that cannot be moved back (``new`` holds a file where the old folder held a folder)
    stays in ``.NAME.old.XXXXXXXX`` beside ``final``, named in a warning; nothing else of the
    old folder is kept."""
    backup = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
    backup.rmdir()
    os.replace(final, backup)
    os.replace(new, final)
    if _carry_over(backup, final, replaces or (lambda _rel: False), Path()):
        shutil.rmtree(backup)
    else:
        log.warning("kept %s: it holds entries of the old %s the new output could not take",
                    backup, final)


def _carry_over(old: Path, new: Path, replaces: Callable[[Path], bool], rel: Path) -> bool:
    """Move ``old``'s entries that ``new`` lacks into it; True if nothing needs keeping."""
    clean = True
    for entry in sorted(old.iterdir()):
        r, target = rel / entry.name, new / entry.name
        if entry.is_dir() and not entry.is_symlink():
            made = not target.exists() and not target.is_symlink()
            if made:
                target.mkdir()
            if target.is_dir() and not target.is_symlink():
                clean &= _carry_over(entry, target, replaces, r)
                if made:
                    with contextlib.suppress(OSError):
                        target.rmdir()  # only if nothing was carried into it
            else:
                clean = False
        elif not replaces(r) and not target.exists() and not target.is_symlink():
            os.replace(entry, target)
    return clean


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
