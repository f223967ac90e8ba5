"""Write a 4D NIfTI one frame at a time, so a long cine never has to sit in memory.

A NIfTI stores voxels x-fastest (Fortran order), so frame ``t`` of an ``(X, Y, Z, T)`` image is
one contiguous block after frame ``t - 1``: the header is written first, then each frame is
appended (through gzip for ``.nii.gz``). The header is built with nibabel exactly as
:func:`nimosef_engine.io.nifti.save_nifti` builds it (same sform/qform codes, units, pixdim
and TR), and the file appears at its final path only when every frame has been written
(:func:`nimosef_engine.core.atomic.atomic_path`).
"""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path
from types import TracebackType

import nibabel as nib
import numpy as np
from nibabel.arraywriters import get_slope_inter, make_array_writer
from nibabel.volumeutils import seek_tell

from nimosef_engine.core.atomic import atomic_path
from nimosef_engine.io.nifti import nifti_image

GZIP_LEVEL = 1  # nibabel's default for .nii.gz
WRITE_BLOCK_BYTES = 16 * 1024 * 1024  # largest piece handed to gzip at once


def nifti_header(shape: tuple[int, ...], dtype, affine_ras: np.ndarray,
                 time_spacing: float | None = None) -> nib.Nifti1Header:
    """The single-file NIfTI-1 header :func:`save_nifti` writes for an array of ``shape`` and
    ``dtype`` with ``affine_ras`` (4, 4) and, for 4D, ``time_spacing`` ms between frames.

    Built through nibabel's own image/header path on a zero-stride stand-in array (no voxel
    memory), so offsets, scaling fields and units match a ``nib.save`` of the real data.
    """
    dtype = np.dtype(dtype)
    stand_in = np.broadcast_to(np.zeros((), dtype), tuple(int(s) for s in shape))
    img = nifti_image(stand_in, affine_ras, time_spacing)
    img.update_header()
    hdr = img.header
    writer = make_array_writer(stand_in, dtype, hdr.has_data_slope, hdr.has_data_intercept)
    hdr.set_slope_inter(*get_slope_inter(writer))
    return hdr


class NiftiFrameWriter:
    """Context manager writing an ``(X, Y, Z, T)`` NIfTI frame by frame.

    ``shape``: ``(X, Y, Z, T)``; ``dtype``: the on-disk type (frames are cast to it);
    ``affine_ras`` (4, 4); ``time_spacing``: ms between frames or None. Call
    :meth:`write_frame` with each ``(X, Y, Z)`` frame in time order. Leaving the block early
    or with fewer than ``T`` frames raises and leaves no file behind.
    """

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int], dtype,
                 affine_ras: np.ndarray, time_spacing: float | None = None):
        if len(shape) != 4:
            raise ValueError(f"expected a 4D shape (X, Y, Z, T), got {tuple(shape)}")
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.header = nifti_header(self.shape, self.dtype, affine_ras, time_spacing)
        self.frames_written = 0
        self._stack: contextlib.ExitStack | None = None
        self._fh = None

    def __enter__(self) -> NiftiFrameWriter:
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_path(self.path))
        raw = stack.enter_context(open(tmp, "wb"))
        if self.path.name.endswith(".gz"):
            self._fh = stack.enter_context(
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL))
        else:
            self._fh = raw
        self._stack = stack
        try:
            self.header.write_to(self._fh)
            seek_tell(self._fh, self.header.get_data_offset(), write0=True)
        except BaseException:
            stack.close()
            raise
        return self

    def write_frame(self, frame: np.ndarray) -> None:
        """Append one ``(X, Y, Z)`` frame (x fastest on disk)."""
        if self._fh is None:
            raise RuntimeError("NiftiFrameWriter.write_frame outside its 'with' block")
        if self.frames_written >= self.shape[3]:
            raise ValueError(f"{self.path.name}: all {self.shape[3]} frames already written")
        if tuple(frame.shape) != self.shape[:3]:
            raise ValueError(f"{self.path.name}: frame shape {tuple(frame.shape)}, expected "
                             f"{self.shape[:3]}")
        # Fortran order of (X, Y, Z) is C order of (Z, Y, X): write it z-slab by z-slab
        zyx = frame.transpose(2, 1, 0)
        slab = max(1, WRITE_BLOCK_BYTES // max(1, self.shape[0] * self.shape[1]
                                               * self.dtype.itemsize))
        for k in range(0, self.shape[2], slab):
            block = np.ascontiguousarray(zyx[k:k + slab], dtype=self.dtype)
            self._fh.write(memoryview(block).cast("B"))
        self.frames_written += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        stack, self._stack, self._fh = self._stack, None, None
        if exc is None and self.frames_written != self.shape[3]:
            exc = ValueError(f"{self.path.name}: {self.frames_written} of {self.shape[3]} "
                             "frames written")
            exc_type, tb = type(exc), None
            if not stack.__exit__(exc_type, exc, tb):
                raise exc
            return False
        return bool(stack.__exit__(exc_type, exc, tb))
