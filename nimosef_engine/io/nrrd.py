"""Read NRRD volumes and volume sequences (Slicer ``.seq.nrrd``) with SimpleITK.

Slicer's ``vtkMRMLVolumeSequenceStorageNode`` writes a sequence as a 4D NRRD whose last axis
has kind ``list`` (index name in ``labels``, unit in ``units``, index values in the custom
field ``axis 3 index values``); SimpleITK reads that axis as pixel components. A plain 4D
NRRD (e.g. written by SimpleITK, all axes ``domain``) is read as a 4D image whose fourth
axis is time. Both give ``(X, Y, Z, T)`` data; SimpleITK's geometry is LPS, returned as RAS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.io.dicom import LPS_TO_RAS
from nimosef_engine.io.nifti import MAX_SPACING_MM, MIN_SPACING_MM

if TYPE_CHECKING:  # SimpleITK is imported where it is used: NIfTI users never load it
    import SimpleITK as sitk

NRRD_MAGIC = b"NRRD"
TIME_UNITS_MS = {"ms": 1.0, "msec": 1.0, "millisecond": 1.0, "milliseconds": 1.0,
                 "s": 1000.0, "sec": 1000.0, "second": 1000.0, "seconds": 1000.0}
SEQUENCE_KINDS = {"list", "time", "domain", "space"}


@dataclass
class NrrdVolume:
    """A NRRD file: ``data`` (X, Y, Z) or (X, Y, Z, T) float32, ``affine_ras`` (4, 4),
    ``index_values`` (T,) of a sequence (as written, or None), ``index_unit`` ("" if none)."""

    data: np.ndarray
    affine_ras: np.ndarray
    index_values: np.ndarray | None = None
    index_unit: str = ""

    def trigger_times_ms(self) -> np.ndarray | None:
        """Index values in ms when they are non-negative increasing times, else None."""
        scale = TIME_UNITS_MS.get(self.index_unit.strip().lower())
        vals = self.index_values
        if scale is None or vals is None or vals.size < 2:
            return None
        if np.any(vals < 0) or np.any(np.diff(vals) <= 0):
            return None
        return vals * scale


def _sitk_problem(exc: RuntimeError) -> str:
    """The informative line of a SimpleITK exception (the deepest ``[nrrd]`` or ERROR line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    nrrd = [ln for ln in lines if ln.startswith("[nrrd]")]
    line = nrrd[-1] if nrrd else lines[-1]
    return re.sub(r"^(\[nrrd\]\s*\w+:\s*|.*ERROR:\s*)", "", line)[:160]


def _meta(reader: sitk.ImageFileReader, key: str) -> str | None:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else None


def _index_values(reader: sitk.ImageFileReader) -> np.ndarray | None:
    for key in reader.GetMetaDataKeys():
        if re.fullmatch(r"axis \d+ index values", key):
            try:
                return np.array([float(v) for v in reader.GetMetaData(key).split()])
            except ValueError:
                return None
    return None


def _affine_ras(spacing, direction, origin, dim: int) -> np.ndarray:
    """RAS voxel -> mm affine from SimpleITK (LPS) spacing/direction/origin of ``dim`` axes."""
    d = np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:3, :3]
    a = np.eye(4)
    a[:3, :3] = d * np.asarray(spacing[:3], dtype=np.float64)
    a[:3, 3] = np.asarray(origin[:3], dtype=np.float64)
    return LPS_TO_RAS @ a


def read_nrrd(path: str | Path) -> NrrdVolume:
    """Read a 3D NRRD volume or a 4D NRRD sequence; see the module docstring.

    Raises :class:`NimosefInputError` naming the file for a missing/unreadable file, a wrong
    magic, truncated data, a 2D or vector (e.g. RGB) image, absurd spacing or a zero-size axis.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise NimosefInputError(path, "file not found")
    if path.is_dir():
        raise NimosefInputError(path, "is a directory, expected a NRRD file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != NRRD_MAGIC:
        raise NimosefInputError(path, f"not a NRRD file: wrong magic {magic!r}, expected "
                                      f"{NRRD_MAGIC!r}")
    reader = sitk.ImageFileReader()
    reader.SetImageIO("NrrdImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        dim, n_comp, size = reader.GetDimension(), reader.GetNumberOfComponents(), reader.GetSize()
        if dim < 3 or min(size) == 0:
            problem = (f"zero-size dimension in shape {tuple(size)}" if min(size) == 0 else
                       f"expected a 3D or 4D image, got {dim}D of shape {tuple(size)}")
            raise NimosefInputError(path, problem)
        pixel_kind = _meta(reader, "NRRD_kinds[pixel]")
        if n_comp > 1 and pixel_kind is not None and pixel_kind.lower() not in SEQUENCE_KINDS:
            raise NimosefInputError(path, f"a {pixel_kind} image with {n_comp} components, "
                                          "not a volume sequence")
        if dim > 4 or (dim == 4 and n_comp > 1):
            raise NimosefInputError(path, f"unsupported {dim}D image with {n_comp} components")
        image = reader.Execute()
    except RuntimeError as exc:
        raise NimosefInputError(path, f"not a readable NRRD file ({_sitk_problem(exc)})") from None
    arr = sitk.GetArrayViewFromImage(image)
    if dim == 4:  # (T, Z, Y, X)
        data = np.transpose(arr, (3, 2, 1, 0))
        values, unit = None, ""
    elif n_comp > 1:  # (Z, Y, X, T)
        data = np.transpose(arr, (2, 1, 0, 3))
        values, unit = _index_values(reader), _meta(reader, "NRRD_units[pixel]") or ""
        if values is not None and values.size != n_comp:
            values = None
    else:  # (Z, Y, X)
        data = np.transpose(arr, (2, 1, 0))
        values, unit = None, ""
    affine = _affine_ras(image.GetSpacing(), image.GetDirection(), image.GetOrigin(), dim)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise NimosefInputError(path, f"absurd voxel spacing {np.round(spacing, 4).tolist()} mm")
    return NrrdVolume(np.ascontiguousarray(data, dtype=np.float32), affine, values, unit)
