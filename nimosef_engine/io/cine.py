"""One cardiac cine from whatever a clinician brings, validated.

Accepted inputs (``load_cine``):
- one 4D NIfTI ``(x, y, z, t)``;
- several 3D NIfTI (or NRRD) frames of one cine, in time order;
- a folder of DICOM files (one cine series; ``series=`` picks one of several);
- a ``.nrrd`` / ``.seq.nrrd`` volume sequence (Slicer) or a plain 4D NRRD.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import spacing_of
from nimosef_engine.io.dicom import cycle_from_triggers, read_dicom_cine
from nimosef_engine.io.nifti import MAX_SPACING_MM, MIN_SPACING_MM, load_nifti
from nimosef_engine.io.nrrd import read_nrrd

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".seq.nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
GEOMETRY_ATOL = 1e-3
MIN_FRAMES = 2
MAX_CYCLE_FRAMES = 1000  # finest frame grid tried for frame_times without n_frames


@dataclass
class Cine:
    """A cine MRI on one voxel grid.

    frames: (T, X, Y, Z) float32 intensities. affine_ras: (4, 4) voxel -> RAS mm (true
    spacing). frame_times: (T,) cycle fraction in [0, 1). trigger_times_ms: (T,) ms or None.
    n_frames_cycle: frames in the full cardiac cycle. frame_indices: (T,) 0-based positions
    in that cycle. source: what was read.
    """

    frames: np.ndarray
    affine_ras: np.ndarray
    frame_times: np.ndarray
    trigger_times_ms: np.ndarray | None
    n_frames_cycle: int
    frame_indices: np.ndarray
    source: str

    def __post_init__(self):
        self.frames = np.asarray(self.frames, dtype=np.float32)
        self.affine_ras = np.asarray(self.affine_ras, dtype=np.float64).reshape(4, 4)
        self.frame_times = np.asarray(self.frame_times, dtype=np.float64)
        self.frame_indices = np.asarray(self.frame_indices, dtype=np.int64)
        self.n_frames_cycle = int(self.n_frames_cycle)
        if self.trigger_times_ms is not None:
            self.trigger_times_ms = np.asarray(self.trigger_times_ms, dtype=np.float64)
        n = self.frames.shape[0]
        if self.frames.ndim != 4:
            raise ValueError(f"frames must be (T, X, Y, Z), got {self.frames.shape}")
        for name in ("frame_times", "frame_indices", "trigger_times_ms"):
            value = getattr(self, name)
            if value is not None and value.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {value.shape}")
        if np.any(self.frame_times < 0) or np.any(self.frame_times >= 1):
            raise ValueError("frame_times must lie in [0, 1)")

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial grid shape (X, Y, Z)."""
        return tuple(int(s) for s in self.frames.shape[1:])

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size (mm) along i, j, k."""
        return spacing_of(self.affine_ras)


def _suffix_kind(path: Path) -> str:
    name = path.name.lower()
    for kind, suffixes in (("nifti", NIFTI_SUFFIXES), ("nrrd", NRRD_SUFFIXES),
                           ("dicom", DICOM_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    raise NimosefInputError(path, f"unknown extension '{''.join(path.suffixes) or path.name}': "
                                  "expected .nii, .nii.gz, .nrrd, .seq.nrrd, .nhdr, .dcm or "
                                  "a DICOM folder")


def _nifti_dt_ms(path: Path) -> float | None:
    """Frame interval (ms) from a NIfTI header when its time unit is set, else None."""
    header = nib.load(str(path)).header
    unit = header.get_xyzt_units()[1]
    scale = {"msec": 1.0, "sec": 1000.0, "usec": 1e-3}.get(unit)
    zooms = header.get_zooms()
    if scale is None or len(zooms) < 4 or not 0 < zooms[3] * scale <= 1000:
        return None
    return float(zooms[3] * scale)


def _load_volume(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(data (X,Y,Z) or (X,Y,Z,T), affine_ras, trigger_ms or None)`` of one file."""
    kind = _suffix_kind(path)
    if not path.exists():
        raise NimosefInputError(path, "file not found")
    if path.is_dir():
        raise NimosefInputError(path, "is a directory, expected a file (give a DICOM folder "
                                      "as the only input)")
    if kind == "nifti":
        data, affine = load_nifti(path, ndim=(3, 4))
        dt = _nifti_dt_ms(path) if data.ndim == 4 else None
        trigger = None if dt is None else np.arange(data.shape[3]) * dt
        return data, affine, trigger
    if kind == "nrrd":
        vol = read_nrrd(path)
        return vol.data, vol.affine_ras, vol.trigger_times_ms()
    raise NimosefInputError(path, "a DICOM file: give the folder of the DICOM series instead")


def _check_frames(frames: np.ndarray, affine: np.ndarray, names: Sequence[str]) -> None:
    """Geometry and intensity checks shared by all formats; ``names[t]`` names frame t."""
    if frames.shape[0] < MIN_FRAMES:
        raise NimosefInputError(names[0], f"a single frame of shape {frames.shape[1:]}: "
                                          f"segment-track needs >= {MIN_FRAMES} frames")
    if min(frames.shape) == 0:
        raise NimosefInputError(names[0], f"zero-size dimension in (T, X, Y, Z) shape "
                                          f"{frames.shape}")
    spacing = spacing_of(affine)
    if not np.all(np.isfinite(affine)) or np.any(spacing < MIN_SPACING_MM) \
            or np.any(spacing > MAX_SPACING_MM):
        raise NimosefInputError(names[0], f"absurd voxel spacing "
                                          f"{np.round(spacing, 4).tolist()} mm")
    for t in range(frames.shape[0]):
        frame = frames[t]
        if not np.all(np.isfinite(frame)):
            raise NimosefInputError(names[t], f"frame {t} contains NaN or infinite values")
        lo, hi = float(frame.min()), float(frame.max())
        if lo == hi:
            raise NimosefInputError(names[t], f"frame {t} is a constant image (all {lo:g})")


def _frames_from_files(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Stack several 3D frames; all must share shape and geometry."""
    arrays, ref_affine = [], None
    for path in paths:
        data, affine, _ = _load_volume(path)
        if data.ndim == 4:
            raise NimosefInputError(path, f"a 4D image among {len(paths)} inputs: give one 4D "
                                          "cine alone, or several 3D frames")
        if arrays and data.shape != arrays[0].shape:
            raise NimosefInputError(path, f"frame shape {data.shape} differs from "
                                          f"{arrays[0].shape} of {paths[0]}")
        if ref_affine is not None and not np.allclose(affine, ref_affine, atol=GEOMETRY_ATOL):
            raise NimosefInputError(path, f"frame geometry (affine) differs from {paths[0]}: "
                                          f"max difference {np.abs(affine - ref_affine).max():.4g}")
        ref_affine = affine if ref_affine is None else ref_affine
        arrays.append(data)
    return np.stack(arrays, axis=0), ref_affine


def _timing(n: int, frame_times, frame_numbers, n_frames, default_times=None,
            warn_even: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """``(frame_times, frame_indices, n_frames_cycle)`` from the user's options or defaults."""
    if n_frames is not None and int(n_frames) < n:
        raise NimosefInputError("n_frames", f"{n_frames} is fewer than the {n} input frames")
    if frame_times is not None and frame_numbers is not None:
        raise NimosefInputError("frame_times", "give frame_times or frame_numbers, not both")
    if frame_numbers is not None:
        numbers = np.asarray(frame_numbers)
        if n_frames is None:
            raise NimosefInputError("frame_numbers", "needs n_frames (frames in the full cycle)")
        ncyc = int(n_frames)
        if numbers.shape != (n,) or not np.all(numbers == np.round(numbers)):
            raise NimosefInputError("frame_numbers", f"expected {n} integers, got {numbers}")
        numbers = numbers.astype(np.int64)
        if numbers.min() < 1 or numbers.max() > ncyc or len(set(numbers.tolist())) != n:
            raise NimosefInputError("frame_numbers", f"{numbers.tolist()} must be distinct, "
                                                     f"1-based and <= n_frames={ncyc}")
        rel = np.mod(numbers - numbers[0], ncyc)
        if np.any(np.diff(rel) <= 0):
            raise NimosefInputError("frame_numbers", f"{numbers.tolist()} are not in time order "
                                                     "(the inputs are frames in time order; "
                                                     "the cycle may wrap once)")
        return rel / ncyc, numbers - 1, ncyc
    if frame_times is not None:
        times = np.asarray(frame_times, dtype=np.float64)
        if times.shape != (n,) or not np.all(np.isfinite(times)) or times.min() < 0 \
                or times.max() >= 1:
            raise NimosefInputError("frame_times", f"expected {n} cycle fractions in [0, 1), "
                                                   f"got {times.tolist()}")
        if np.any(np.diff(np.mod(times - times[0], 1.0)) <= 0):
            raise NimosefInputError("frame_times", f"{times.tolist()} are not in time order "
                                                   "(the inputs are frames in time order; the "
                                                   "cycle may wrap once)")
        # without n_frames, the coarsest cycle in which the frames fall on distinct positions
        cycles = [int(n_frames)] if n_frames is not None else range(n, MAX_CYCLE_FRAMES + 1)
        for ncyc in cycles:
            idx = np.mod(np.round(times * ncyc).astype(np.int64), ncyc)
            if len(set(idx.tolist())) == n:
                return times, idx, ncyc
        raise NimosefInputError("frame_times", f"{times.tolist()} put two frames at the same "
                                               f"position of a {ncyc}-frame cycle; give a "
                                               "larger n_frames")
    if default_times is not None:
        return np.asarray(default_times, dtype=np.float64), np.arange(n), n
    if warn_even:
        log.warning("no frame_times or frame_numbers given: assuming the %d frames are evenly "
                    "spaced over the whole cardiac cycle", n)
    ncyc = int(n_frames) if n_frames is not None else n
    return np.arange(n) / ncyc, np.arange(n), ncyc


def _as_paths(inputs) -> list[Path]:
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise NimosefInputError(None, "no input given: expected a 4D cine, 3D frames, a DICOM "
                                      "folder or a NRRD sequence")
    return paths


def load_cine(inputs: Sequence[str | Path] | str | Path, *, frame_times=None,
              frame_numbers=None, n_frames: int | None = None,
              series: int | str | None = None) -> Cine:
    """Read and validate one cine from a list of inputs (see the module docstring).

    frame_times: (T,) cycle fractions of the inputs' frames; frame_numbers: (T,) 1-based frame
    numbers in a cycle of ``n_frames`` (ACDC: ED and ES numbers from Info.cfg). Without
    either, 4D inputs are spaced k/T (or k/n_frames), DICOM frames (and NRRD sequences
    indexed in ms or s) at trigger time / cycle length (so frame 0 sits at its trigger time,
    not 0), and 3D frame lists evenly (with a warning). ``series``: DICOM series index, UID or
    description when a folder holds several. Raises :class:`NimosefInputError`.
    """
    paths = _as_paths(inputs)
    dirs = [p for p in paths if p.is_dir()]
    is_dicom = (len(paths) == 1 and bool(dirs)) or all(
        p.name.lower().endswith(DICOM_SUFFIXES) for p in paths)
    if dirs and not is_dicom:
        raise NimosefInputError(dirs[0], "is a directory where a file is expected (a DICOM "
                                         "folder must be the only input)")
    if series is not None and not is_dicom:
        raise NimosefInputError("series", "applies only to a DICOM folder")
    trigger = default_times = None
    if is_dicom:
        source_path = paths[0] if len(paths) == 1 else paths
        frames, layout = read_dicom_cine(source_path, series)
        names = ([f"{paths[0]} (frame {t})" for t in range(frames.shape[0])]
                 if len(paths) == 1 else [str(f) for f in layout.files[0]])
        affine = layout.affine_ras
        trigger = layout.trigger_ms.mean(axis=0)
        if frames.shape[0] >= MIN_FRAMES:
            default_times, _ = cycle_from_triggers(trigger)
        source = (f"DICOM series {layout.series_uid} '{layout.description}' in "
                  f"{paths[0] if len(paths) == 1 else paths[0].parent}")
    elif len(paths) == 1:
        data, affine, trigger = _load_volume(paths[0])
        if data.ndim == 3:
            raise NimosefInputError(paths[0], f"a single 3D frame of shape {data.shape}: "
                                              f"segment-track needs >= {MIN_FRAMES} frames "
                                              "(give a 4D cine or several frames)")
        frames = np.moveaxis(data, 3, 0)
        names = [f"{paths[0]} (frame {t})" for t in range(frames.shape[0])]
        source = f"4D {_suffix_kind(paths[0]).upper()} {paths[0]}"
        if trigger is not None and trigger.size >= MIN_FRAMES and paths[0].name.lower() \
                .endswith(NRRD_SUFFIXES):
            default_times, _ = cycle_from_triggers(trigger)
    else:
        frames, affine = _frames_from_files(paths)
        names = [str(p) for p in paths]
        source = f"{len(paths)} 3D frames: " + ", ".join(str(p) for p in paths)
    _check_frames(frames, affine, names)
    n = frames.shape[0]
    times, idx, ncyc = _timing(n, frame_times, frame_numbers, n_frames, default_times,
                               warn_even=len(paths) > 1 and not is_dicom)
    return Cine(frames=np.ascontiguousarray(frames, dtype=np.float32), affine_ras=affine,
                frame_times=times, trigger_times_ms=trigger, n_frames_cycle=ncyc,
                frame_indices=idx, source=source)
