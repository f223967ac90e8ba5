"""Read a DICOM cine series (a folder of single-frame files) with SimpleITK only.

Layout of a cine: each slice (a distinct position along the stack normal) holds one image per
cardiac phase; the frame of an image is the rank of its TriggerTime within its slice (trigger
times may differ from slice to slice). DICOM patient coordinates are LPS; the returned affine
is RAS (x, y negated), with voxel ``i`` along the image rows (column index), ``j`` along the
columns (row index) and ``k`` along the sorted stack normal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nimosef_engine.core.errors import NimosefInputError

if TYPE_CHECKING:  # SimpleITK is imported where it is used: NIfTI users never load it
    import SimpleITK as sitk

log = logging.getLogger(__name__)

TAG_SERIES_UID = "0020|000e"
TAG_SERIES_DESCRIPTION = "0008|103e"
TAG_POSITION = "0020|0032"
TAG_ORIENTATION = "0020|0037"
TAG_PIXEL_SPACING = "0028|0030"
TAG_SLICE_THICKNESS = "0018|0050"
TAG_SPACING_BETWEEN_SLICES = "0018|0088"
TAG_TRIGGER_TIME = "0018|1060"
TAG_INSTANCE_NUMBER = "0020|0013"

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SLICE_POSITION_TOL_MM = 0.01
GEOMETRY_TOL = 1e-3
IMAGE_FILE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class DicomImageInfo:
    """Header of one single-frame DICOM image (positions in LPS mm)."""

    path: Path
    series_uid: str
    description: str
    position_lps: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: np.ndarray | None
    slice_thickness: float | None
    trigger_time_ms: float | None
    instance_number: int | None
    size: tuple[int, ...]


@dataclass
class DicomCineLayout:
    """One cine series sorted into slices and frames.

    ``files[k][t]``: the file of slice ``k`` (sorted along ``normal_lps``) at frame ``t``.
    ``trigger_ms``: ``(Z, T)`` trigger times. ``affine_ras``: voxel -> RAS mm of the volume.
    """

    series_uid: str
    description: str
    files: list[list[Path]]
    trigger_ms: np.ndarray
    affine_ras: np.ndarray
    normal_lps: np.ndarray
    slice_positions_mm: np.ndarray
    shape_xy: tuple[int, int]

    def index_of(self, path: str | Path) -> tuple[int, int]:
        """``(k, t)`` (slice, frame) of a file of this series."""
        target = Path(path).resolve()
        for k, row in enumerate(self.files):
            for t, f in enumerate(row):
                if f.resolve() == target:
                    return k, t
        raise KeyError(f"{path} is not part of series {self.series_uid}")


def _tag(reader: sitk.ImageFileReader, key: str) -> str | None:
    if not reader.HasMetaDataKey(key):
        return None
    value = reader.GetMetaData(key).strip().strip("\x00").strip()
    return value or None


def _floats(value: str | None, n: int | None = None) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value.split("\\")], dtype=np.float64)
    except ValueError:
        return None
    if n is not None and out.size != n:
        return None
    return out


def read_image_info(path: Path) -> DicomImageInfo | None:
    """Header of one file, or ``None`` when it is not a readable DICOM image."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    trigger = _floats(_tag(reader, TAG_TRIGGER_TIME), 1)
    thickness = _floats(_tag(reader, TAG_SPACING_BETWEEN_SLICES), 1)
    if thickness is None:
        thickness = _floats(_tag(reader, TAG_SLICE_THICKNESS), 1)
    instance = _floats(_tag(reader, TAG_INSTANCE_NUMBER), 1)
    return DicomImageInfo(
        path=path,
        series_uid=_tag(reader, TAG_SERIES_UID) or "<no SeriesInstanceUID>",
        description=_tag(reader, TAG_SERIES_DESCRIPTION) or "",
        position_lps=_floats(_tag(reader, TAG_POSITION), 3),
        orientation=_floats(_tag(reader, TAG_ORIENTATION), 6),
        pixel_spacing=_floats(_tag(reader, TAG_PIXEL_SPACING), 2),
        slice_thickness=None if thickness is None else float(thickness[0]),
        trigger_time_ms=None if trigger is None else float(trigger[0]),
        instance_number=None if instance is None else int(instance[0]),
        size=tuple(int(s) for s in reader.GetSize()),
    )


def _list_files(source: Path | Sequence[Path]) -> tuple[Path, list[Path]]:
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.exists():
            raise NimosefInputError(folder, "folder not found")
        if not folder.is_dir():
            raise NimosefInputError(folder, "expected a folder of DICOM files")
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and not p.name.startswith("."))
        return folder, files
    files = [Path(p) for p in source]
    for p in files:
        if not p.is_file():
            raise NimosefInputError(p, "file not found" if not p.exists() else "not a file")
    return (files[0].parent if files else Path(".")), files


def _is_cine(infos: list[DicomImageInfo]) -> bool:
    times = {i.trigger_time_ms for i in infos}
    return None not in times and len(infos) > 1 and len(times) > 1


def _describe(uid: str, infos: list[DicomImageInfo], idx: int) -> str:
    desc = infos[0].description or "no description"
    return f"[{idx}] {uid} '{desc}' ({len(infos)} files)"


def _select_series(folder: Path, groups: dict[str, list[DicomImageInfo]],
                   series: int | str | None) -> str:
    uids = sorted(groups, key=lambda u: (groups[u][0].description, u))
    listing = "; ".join(_describe(u, groups[u], i) for i, u in enumerate(uids))
    if series is not None:
        if isinstance(series, int) or (isinstance(series, str) and series.isdigit()
                                       and series not in groups):
            idx = int(series)
            if not 0 <= idx < len(uids):
                raise NimosefInputError(folder, f"series index {idx} out of range; series: "
                                                f"{listing}")
            return uids[idx]
        if series in groups:
            return series
        matches = [u for u in uids if groups[u][0].description.lower() == str(series).lower()]
        if len(matches) == 1:
            return matches[0]
        problem = "matches several series" if matches else "matches no series"
        raise NimosefInputError(folder, f"series={series!r} {problem}; series: {listing}")
    cines = [u for u in uids if _is_cine(groups[u])]
    if len(cines) == 1:
        return cines[0]
    if len(cines) > 1:
        listing = "; ".join(_describe(u, groups[u], uids.index(u)) for u in cines)
        raise NimosefInputError(folder, f"{len(cines)} cine series in folder: {listing}; "
                                        "choose one with --series (series= in Python): index, "
                                        "UID or description")
    if len(uids) == 1:
        return uids[0]
    raise NimosefInputError(folder, f"not a cine: no series with trigger times; series: "
                                    f"{listing}")


def _check_same(folder: Path, infos: list[DicomImageInfo]) -> tuple[np.ndarray, np.ndarray]:
    """Common orientation (6,) and pixel spacing (2,) of a series, else an error."""
    for name in ("position_lps", "orientation", "pixel_spacing"):
        missing = [i.path.name for i in infos if getattr(i, name) is None]
        if missing:
            raise NimosefInputError(folder, f"DICOM files without a valid {name} tag: "
                                            f"{', '.join(missing[:5])}")
    ref = infos[0]
    for info in infos[1:]:
        if not np.allclose(info.orientation, ref.orientation, atol=GEOMETRY_TOL):
            raise NimosefInputError(info.path, "ImageOrientationPatient differs from "
                                               f"{ref.path.name}: mixed slice orientations")
        if not np.allclose(info.pixel_spacing, ref.pixel_spacing, atol=GEOMETRY_TOL):
            raise NimosefInputError(info.path, f"PixelSpacing differs from {ref.path.name}")
        if info.size[:2] != ref.size[:2]:
            raise NimosefInputError(info.path, f"image size {info.size[:2]} differs from "
                                               f"{ref.size[:2]} of {ref.path.name}")
    if len(ref.size) > 2 and any(i.size[2] > 1 for i in infos):
        raise NimosefInputError(folder, "multi-frame DICOM images are not supported; "
                                        "export the cine as single-frame files")
    return ref.orientation, ref.pixel_spacing


def _group_slices(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cluster positions along the normal: ``(slice index per image, sorted slice positions)``."""
    order = np.argsort(pos, kind="stable")
    labels = np.empty(len(pos), dtype=np.int64)
    centres: list[list[float]] = []
    for i in order:
        if centres and pos[i] - centres[-1][-1] <= SLICE_POSITION_TOL_MM:
            centres[-1].append(pos[i])
        else:
            centres.append([pos[i]])
        labels[i] = len(centres) - 1
    return labels, np.array([np.mean(c) for c in centres])


def scan_dicom_cine(source: Path | Sequence[Path], series: int | str | None = None
                    ) -> DicomCineLayout:
    """Read the headers of a DICOM folder (or file list) and sort one cine series.

    ``series``: index (0-based, as listed in the error), SeriesInstanceUID or
    SeriesDescription; needed only when the folder holds several cine series.
    """
    folder, files = _list_files(source)
    infos = [info for info in (read_image_info(p) for p in files) if info is not None]
    if not infos:
        images = [p.name for p in files if p.name.lower().endswith(IMAGE_FILE_SUFFIXES)]
        hint = f"; give image files such as {images[0]} as inputs instead" if images else ""
        raise NimosefInputError(folder, f"no DICOM cine in folder ({len(files)} files, none "
                                        f"readable as a DICOM image){hint}")
    skipped = len(files) - len(infos)
    if skipped:
        log.info("%s: skipped %d files that are not DICOM images", folder, skipped)
    groups: dict[str, list[DicomImageInfo]] = {}
    for info in infos:
        groups.setdefault(info.series_uid, []).append(info)
    uid = _select_series(folder, groups, series)
    infos = groups[uid]
    no_trigger = [i.path.name for i in infos if i.trigger_time_ms is None]
    if no_trigger:
        raise NimosefInputError(folder, f"not a cine: no trigger times (TriggerTime 0018|1060 "
                                        f"missing in {len(no_trigger)} of {len(infos)} files, "
                                        f"e.g. {no_trigger[0]})")
    orientation, pixel_spacing = _check_same(folder, infos)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 0.5:
        raise NimosefInputError(folder, "degenerate ImageOrientationPatient")
    normal /= np.linalg.norm(normal)
    positions = np.stack([i.position_lps for i in infos])
    slice_of, slice_pos = _group_slices(positions @ normal)
    n_slices = len(slice_pos)
    per_slice = [[infos[i] for i in np.flatnonzero(slice_of == k)] for k in range(n_slices)]
    counts = [len(s) for s in per_slice]
    if len(set(counts)) > 1:
        n_common = max(set(counts), key=lambda c: (counts.count(c), c))
        k_bad = next(k for k, c in enumerate(counts) if c != n_common)
        raise NimosefInputError(folder, f"slice {k_bad} (at {slice_pos[k_bad]:.2f} mm along the "
                                        f"normal) has {counts[k_bad]} phases, others have "
                                        f"{n_common}: every slice needs the same number")
    n_phases = counts[0]
    if n_phases < 2:
        raise NimosefInputError(folder, f"a single phase per slice ({n_slices} images): "
                                        "not a cine, segment-track needs >= 2 frames")
    files_kt: list[list[Path]] = []
    trigger = np.zeros((n_slices, n_phases))
    for k, images in enumerate(per_slice):
        images.sort(key=lambda i: (i.trigger_time_ms, i.instance_number or 0))
        times = np.array([i.trigger_time_ms for i in images])
        if np.any(np.diff(times) <= 0):
            dup = images[int(np.argmin(np.diff(times))) + 1].path.name
            raise NimosefInputError(folder, f"slice {k} has two images with the same trigger "
                                            f"time ({dup}): repeated acquisition?")
        trigger[k] = times
        files_kt.append([i.path for i in images])
    first = per_slice[0][0].position_lps
    if n_slices > 1:
        gaps = np.diff(slice_pos)
        dz = float(np.median(gaps))
        if np.any(np.abs(gaps - dz) > 0.1 * dz):
            raise NimosefInputError(folder, f"uneven slice spacing {np.round(gaps, 2).tolist()} "
                                            "mm: missing slices?")
        for images in per_slice[1:]:
            offset = images[0].position_lps - first
            in_plane = offset - normal * (offset @ normal)
            if np.linalg.norm(in_plane) > 0.5:
                raise NimosefInputError(images[0].path, "slice is shifted in-plane by "
                                        f"{np.linalg.norm(in_plane):.2f} mm: not one stack")
    else:
        dz = per_slice[0][0].slice_thickness or 1.0
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * pixel_spacing[1]
    affine_lps[:3, 1] = col_dir * pixel_spacing[0]
    affine_lps[:3, 2] = normal * dz
    affine_lps[:3, 3] = first
    ref = infos[0]
    return DicomCineLayout(series_uid=uid, description=ref.description, files=files_kt,
                           trigger_ms=trigger, affine_ras=LPS_TO_RAS @ affine_lps,
                           normal_lps=normal, slice_positions_mm=slice_pos,
                           shape_xy=(int(ref.size[0]), int(ref.size[1])))


def read_pixels(layout: DicomCineLayout) -> np.ndarray:
    """Pixel data of a sorted series as ``(T, X, Y, Z)`` float32 (rescale slope applied)."""
    import SimpleITK as sitk

    n_slices, n_phases = len(layout.files), len(layout.files[0])
    out = np.zeros((n_phases, *layout.shape_xy, n_slices), dtype=np.float32)
    for k, row in enumerate(layout.files):
        for t, path in enumerate(row):
            try:
                img = sitk.ReadImage(str(path), imageIO="GDCMImageIO")
            except RuntimeError as exc:
                line = str(exc).strip().splitlines()[-1][:120]
                raise NimosefInputError(path, f"unreadable DICOM pixel data ({line})") from None
            if img.GetNumberOfComponentsPerPixel() != 1:
                raise NimosefInputError(path, "colour DICOM image, expected greyscale MRI")
            arr = sitk.GetArrayFromImage(img)  # (1, rows, cols)
            out[t, :, :, k] = arr.reshape(arr.shape[-2:]).T
    return out


def cycle_from_triggers(trigger_ms: np.ndarray) -> tuple[np.ndarray, float]:
    """Cycle fractions ``(T,)`` and cycle length (ms) of mean trigger times per frame.

    The cycle length is estimated as the last trigger time plus the mean frame interval.
    """
    trigger_ms = np.asarray(trigger_ms, dtype=np.float64)
    interval = float(np.mean(np.diff(trigger_ms))) if trigger_ms.size > 1 else 0.0
    if interval <= 0:
        raise ValueError("trigger times do not increase")
    cycle = float(trigger_ms[-1] + interval)
    return np.mod(trigger_ms / cycle, 1.0), cycle


def read_dicom_cine(source: Path | Sequence[Path], series: int | str | None = None
                    ) -> tuple[np.ndarray, DicomCineLayout]:
    """``(frames (T, X, Y, Z) float32, layout)`` of the cine series in a folder or file list."""
    layout = scan_dicom_cine(source, series)
    return read_pixels(layout), layout
