"""The one way files of tensors are read and written: no file the tool reads can run code.

Every checkpoint, subject file and codes file is read by :func:`load_torch_file`, which calls
``torch.load(..., weights_only=True)``: the unpickler builds tensors, numbers, strings,
``None`` and dicts / lists / tuples of them, and refuses anything else (a ``__reduce__``
payload, a class, a function) before it is built. Files written by older versions that hold
numpy scalars or arrays are read through the same restricted unpickler (numpy's plain data
types are allowed, never code) and turned into plain Python values and tensors.

:func:`save_torch_file` writes the same kind of file (values made plain by :func:`plain`) and
reads it back with :func:`load_torch_file`'s rules before it is renamed into place, so every
file the tool writes is one it can read safely. :func:`content_digest` is a SHA-256 of a
payload's content (not of its bytes on disk), stored in files that carry one and checked on
load.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from nimosef_engine.core.atomic import atomic_write_bytes
from nimosef_engine.core.errors import NimosefInputError


def _numpy_globals() -> list:
    """numpy's plain-data types that old files may hold (scalars, dtypes, arrays): their
    reconstruction builds data, never calls user code; object arrays stay refused because their
    elements go through the same restricted unpickler."""
    multiarray = getattr(np, "_core", None) or np.core
    found: list = [multiarray.multiarray.scalar, multiarray.multiarray._reconstruct,
                   np.ndarray, np.dtype]
    # files written with numpy 1 name them numpy.core.multiarray.*
    found += [(multiarray.multiarray.scalar, "numpy.core.multiarray.scalar"),
              (multiarray.multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]
    found += [type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"]
    return found


def _unpickling_refused(exc: BaseException) -> bool:
    """True when torch's weights-only unpickler refused an object (not a damaged file)."""
    text = str(exc)
    return isinstance(exc, pickle.UnpicklingError) and (
        "Weights only load failed" in text or "Unsupported global" in text
        or "weights_only" in text)


def load_torch_file(path: str | Path, what: str,
                    map_location: str | torch.device = "cpu") -> Any:
    """Read a ``torch.save`` file of tensors and plain data, never code.

    ``what`` names the expected file in messages ("checkpoint", "subject file", ...).
    Raises :class:`NimosefInputError` naming ``path`` when it is missing, a folder, damaged,
    or holds anything but tensors and plain data (refused before it is built). Old files'
    numpy values come back as plain Python values and tensors (:func:`plain`).
    """
    path = Path(path)
    if path.is_dir():
        raise NimosefInputError(path, f"is a directory, expected a {what}")
    if not path.is_file():
        raise NimosefInputError(path, f"{what} not found")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise NimosefInputError(path, f"not a readable {what}: it declares more data than "
                                      "this machine can hold") from None
    except Exception as exc:  # torch raises many types for damaged or foreign files
        if _unpickling_refused(exc):
            raise NimosefInputError(path, f"not a readable {what}: it holds Python objects, "
                                          "not only tensors and plain data, and loading them "
                                          "could run code; refused unread") from None
        raise NimosefInputError(path, f"not a readable {what} ({exc.__class__.__name__})") \
            from None
    try:
        return plain(obj)
    except TypeError as exc:
        raise NimosefInputError(path, f"not a readable {what} ({exc})") from None


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars -> Python numbers, numpy arrays -> tensors, paths -> str;
    dicts, lists and tuples converted inside. Raises TypeError for any other object."""
    if isinstance(obj, np.generic):  # before float: np.float64 is a float
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str | bytes | torch.Tensor):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("holds a numpy object array")
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, torch.Size | torch.dtype | torch.device):
        return obj
    raise TypeError(f"holds a {type(obj).__name__}, not a tensor or plain data")


def save_torch_file(path: str | Path, payload: Any) -> None:
    """``torch.save`` :func:`plain` ``payload`` to ``path`` atomically; the bytes are read back
    with the restricted unpickler first (a value it would refuse fails here, at write time)."""
    buf = io.BytesIO()
    torch.save(plain(payload), buf)
    data = buf.getvalue()
    torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    atomic_write_bytes(path, data)


def content_digest(obj: Any) -> str:
    """SHA-256 (hex) of a plain payload's content: keys, values, and each tensor's dtype,
    shape and bytes; the same for the same content whatever the serialisation."""
    h = hashlib.sha256()
    _feed(h, plain(obj))
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if obj is None:
        h.update(b"N;")
    elif isinstance(obj, bool):
        h.update(b"B1;" if obj else b"B0;")
    elif isinstance(obj, int):
        h.update(b"I%d;" % obj)
    elif isinstance(obj, float):
        h.update(b"F" + float(obj).hex().encode() + b";")
    elif isinstance(obj, str | bytes):
        data = obj.encode("utf-8") if isinstance(obj, str) else obj
        h.update(b"S%d:" % len(data) if isinstance(obj, str) else b"Y%d:" % len(data))
        h.update(data)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(b"D%d:" % len(obj))
        for k in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, list | tuple):
        h.update(b"L%d:" % len(obj))
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"O{obj!r};".encode())
