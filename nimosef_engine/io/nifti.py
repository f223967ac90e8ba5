"""NIfTI reading with validation and true geometry; atomic NIfTI writing."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from nimosef_engine.core.atomic import atomic_path
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import nifti_affine_ras

MAX_SPACING_MM = 50.0
MIN_SPACING_MM = 0.05


def _stored_pixdim(path: Path) -> np.ndarray | None:
    """Spatial ``pixdim`` (up to 3 values, one per spatial dimension) as stored in the file.

    nibabel silently replaces a zero ``pixdim`` by 1 when it loads a header, which would turn a
    broken voxel size into 1 mm; read the header unchecked to see the stored values. None when
    the file does not start with a NIfTI-1/2 header (``nib.load`` then reports the problem).
    """
    try:
        with nib.openers.ImageOpener(str(path)) as fobj:
            block = fobj.read(nib.Nifti2Header.template_dtype.itemsize)
    except (OSError, EOFError, zlib.error):
        return None  # not gzip, unreadable: nib.load says what is wrong
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.template_dtype.itemsize
        if len(block) >= size and klass.may_contain_header(block[:size]):
            header = klass(block[:size], check=False)
            n_spatial = int(np.clip(header["dim"][0], 0, 3))
            return np.asarray(header["pixdim"][1:1 + n_spatial], dtype=np.float64)
    return None


# deflate (gzip) compresses at most about 1032:1: a .nii.gz cannot hold more data than this
# many times its size
MAX_DEFLATE_RATIO = 1032


def _check_declared_size(path: Path, img) -> None:
    """Refuse a header that declares more data than the file can hold (a damaged or crafted
    header would otherwise make the reader allocate it: MemoryError or worse)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return  # a .hdr/.img pair: the data are in the other file
    header = img.header
    declared = int(np.prod([int(d) for d in header.get_data_shape()], dtype=object)) \
        * header.get_data_dtype().itemsize
    offset = int(header.get("vox_offset", 0) or 0)
    size = path.stat().st_size
    room = size * MAX_DEFLATE_RATIO if path.name.lower().endswith(".gz") else size - offset
    if declared > room:
        raise NimosefInputError(path, f"its header declares a {tuple(img.shape)} image "
                                      f"({declared / 1024 ** 3:.3g} GB), more than the "
                                      f"{size}-byte file can hold: truncated or damaged")


def load_nifti(path: str | Path, ndim: int | tuple[int, ...] | None = None,
               dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI file as ``(array, affine_ras)`` with the true voxel spacing.

    ``ndim``: allowed dimensionalities (trailing singleton dimensions beyond 3 are dropped
    first). Raises :class:`NimosefInputError` naming the file for a missing or unreadable
    file, a wrong number of dimensions, a zero-size dimension, absurd spacing or NaN/inf.
    """
    path = Path(path)
    if not path.exists():
        raise NimosefInputError(path, "file not found")
    if path.is_dir():
        raise NimosefInputError(path, "is a directory, expected a NIfTI file")
    try:
        pixdim = _stored_pixdim(path)
        if pixdim is not None and (not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0)):
            raise NimosefInputError(path, f"invalid voxel size: pixdim "
                                          f"{np.round(pixdim, 4).tolist()} (zero or not finite)")
        img = nib.load(str(path))
        _check_declared_size(path, img)
        data = np.asarray(img.dataobj)
    except MemoryError:
        raise NimosefInputError(path, f"declares a {tuple(img.shape)} image, more than this "
                                      "machine's memory") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError,
            nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as exc:
        raise NimosefInputError(path, f"not a readable NIfTI file ({exc.__class__.__name__}: "
                                      f"{str(exc).splitlines()[0][:120]})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if data.ndim not in allowed:
            want = " or ".join(f"{d}D" for d in allowed)
            raise NimosefInputError(path, f"expected a {want} image, got {data.ndim}D of shape "
                                          f"{tuple(data.shape)}")
    if data.ndim < 3:
        raise NimosefInputError(path, f"expected a 3D or 4D image, got {data.ndim}D "
                                      f"of shape {tuple(data.shape)}")
    if min(data.shape) == 0:
        raise NimosefInputError(path, f"zero-size dimension in shape {tuple(data.shape)}")
    try:
        affine = nifti_affine_ras(img)
    except ValueError as exc:
        raise NimosefInputError(path, f"invalid geometry: {exc}") from None
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise NimosefInputError(path, f"absurd voxel spacing {np.round(spacing, 4).tolist()} mm")
    data = data.astype(dtype, copy=False)
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise NimosefInputError(path, "contains NaN or infinite values")
    return data, affine


def nifti_image(data: np.ndarray, affine_ras: np.ndarray,
                time_spacing: float | None = None) -> nib.Nifti1Image:
    """The image :func:`save_nifti` writes: ``affine_ras`` as sform and qform, mm units and,
    for 4D, ``time_spacing`` ms between frames."""
    img = nib.Nifti1Image(data, np.asarray(affine_ras, dtype=np.float64))
    img.header.set_sform(affine_ras, code=1)
    img.header.set_qform(affine_ras, code=1)
    img.header.set_xyzt_units("mm", "msec" if time_spacing else None)
    if data.ndim == 4 and time_spacing:
        zooms = list(img.header.get_zooms())
        zooms[3] = float(time_spacing)
        img.header.set_zooms(zooms)
    return img


def save_nifti(path: str | Path, data: np.ndarray, affine_ras: np.ndarray,
               time_spacing: float | None = None) -> Path:
    """Write ``data`` with ``affine_ras`` (sform and qform) atomically; returns the path."""
    path = Path(path)
    img = nifti_image(np.asarray(data), affine_ras, time_spacing)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    with atomic_path(path) as tmp:
        tmp_named = tmp.with_name(tmp.name + suffix)
        nib.save(img, str(tmp_named))
        tmp_named.rename(tmp)
    return path
