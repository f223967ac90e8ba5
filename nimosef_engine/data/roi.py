"""The region of interest around the heart: the in-plane crop and the intensity scaling that
preprocessing (:mod:`data.preprocess`) and Segment & Track (:mod:`pipeline.segment_track`)
share, so that a new cine reaches the model exactly as the training subjects did."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import HeartFrame, crop_affine, ras_to_voxel, spacing_of
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.io.cine import Cine

ROI_MM = 160.0  # in-plane side of the crop (mm), as the prior and slice network were trained
PERCENTILES = (2.0, 98.0)  # of the whole cine: its intensities are clipped and scaled to these


def intensity_percentiles(cine: np.ndarray, path: str | Path) -> tuple[float, float]:
    """2nd and 98th percentiles of a whole cine; raises if the image is constant there."""
    lo, hi = (float(v) for v in np.percentile(np.asarray(cine, dtype=np.float32), PERCENTILES))
    if not hi > lo:
        raise NimosefInputError(path, f"image has no intensity contrast (2nd and 98th "
                                      f"percentiles both {lo:g})")
    return lo, hi


def normalise_intensity(x: np.ndarray, intensity_range: tuple[float, float]) -> np.ndarray:
    """Clip to ``intensity_range`` and scale to [0, 1] (float32)."""
    lo, hi = intensity_range
    return ((np.clip(x, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def roi_box(foreground: np.ndarray, affine_ras: np.ndarray,
            roi_mm: float) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """In-plane box of ``roi_mm`` mm centred on the foreground centroid, all slices.

    ``foreground`` (X, Y, Z) bool. See :func:`roi_box_at`. Returns (offset, shape).
    """
    return roi_box_at(np.argwhere(foreground).mean(0), foreground.shape, affine_ras, roi_mm)


def roi_box_at(centre_ijk, shape, affine_ras: np.ndarray,
               roi_mm: float) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """In-plane box of ``roi_mm`` mm centred on voxel ``centre_ijk``, all slices.

    The box keeps its size and is shifted to lie inside the image (or takes the whole axis
    when the image is smaller). Returns (offset, shape).
    """
    spacing = spacing_of(affine_ras)
    offset, size = [0, 0, 0], [0, 0, int(shape[2])]
    for ax in (0, 1):
        n = min(int(shape[ax]), max(1, int(round(roi_mm / spacing[ax]))))
        start = int(round(float(centre_ijk[ax]) - n / 2))
        offset[ax] = min(max(start, 0), int(shape[ax]) - n)
        size[ax] = n
    return tuple(offset), tuple(size)


def crop_last3(a: np.ndarray, offset, shape) -> np.ndarray:
    """Crop the last three axes of ``a``."""
    sl = tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))
    return a[(Ellipsis, *sl)]


def subject_from_cine(cine: Cine, heart: HeartFrame, roi_center_ras, frame_times: np.ndarray,
                      roi_mm: float, source: str) -> SubjectData:
    """Crop ``roi_mm`` around ``roi_center_ras`` and normalise as in preprocessing;
    ``frame_times`` the model time of each frame (:mod:`pipeline.cycle_time`)."""
    lo_hi = intensity_percentiles(cine.frames, source)
    centre = ras_to_voxel(cine.affine_ras, np.asarray(roi_center_ras)[None])[0]
    offset, shape = roi_box_at(centre, cine.shape, cine.affine_ras, roi_mm)
    return SubjectData(
        subject_id="subject",
        intensity=np.ascontiguousarray(normalise_intensity(
            crop_last3(cine.frames, offset, shape), lo_hi)),
        frame_times=np.asarray(frame_times, np.float32),
        crop_affine_ras=crop_affine(cine.affine_ras, offset),
        heart=heart, frame_indices=np.asarray(cine.frame_indices, np.int32),
        n_frames_cycle=int(cine.n_frames_cycle), source_shape=tuple(cine.shape),
        crop_offset=tuple(int(o) for o in offset),
        source_affine_ras=np.asarray(cine.affine_ras), intensity_range=lo_hi)
