"""Segment-track's checks of its options and of the cine, before any work is done.

:func:`check_options` runs before the cine is read (numbers in range, the prior and the slice
network readable and fitting their models, so a bad ``--slice-net`` is refused before minutes
of fitting); :func:`check_cine` right after it is read (a voxel size no cardiac cine MRI has,
a field of view too small to hold a heart).
"""

from __future__ import annotations

import math

import numpy as np

from nimosef_engine.errors import NimosefInputError

# In-plane pixel size of a cardiac cine MRI: acquired at about 1-2 mm, reconstructed down to
# about 0.6 mm; 0.3 mm is finer than any cine, 5 mm coarser than any. The 160 mm ROI of the
# prior at 0.3 mm is already 533 pixels a side.
MIN_INPLANE_SPACING_MM = 0.3
MAX_INPLANE_SPACING_MM = 5.0
# An adult heart (LV and RV) spans about 100 mm across: a smaller field of view cannot hold it.
MIN_FIELD_OF_VIEW_MM = 100.0
# The ROI around the heart (the prior was trained on 160 mm crops): it must hold the heart.
MIN_ROI_MM = 100.0
MAX_ROI_MM = 400.0


def check_options(opts) -> None:
    """Refuse options out of range and unreadable models (:class:`SegmentTrackOptions`)."""
    from nimosef_engine.segment_track import MAX_POSE_HYPOTHESES, QUALITY, load_prior
    from nimosef_engine.slice_likelihood import load_slice_net

    if opts.quality not in QUALITY:
        raise NimosefInputError("--quality", f"unknown quality {opts.quality!r} "
                                             f"({', '.join(QUALITY)})")
    _int_in("--res-factor-z", opts.res_factor_z, 1, 8)
    _int_in("--pose-hypotheses", opts.pose_hypotheses, 1, MAX_POSE_HYPOTHESES)
    if opts.fit_steps is not None:
        _int_in("--fit-steps", opts.fit_steps, 1, None)
    if not _finite(opts.roi_mm) or not MIN_ROI_MM <= float(opts.roi_mm) <= MAX_ROI_MM:
        raise NimosefInputError("--roi-mm", f"must be between {MIN_ROI_MM:g} and "
                                            f"{MAX_ROI_MM:g} mm (the region around the heart), "
                                            f"got {opts.roi_mm}")
    if not _finite(opts.memory_budget_gb) or not float(opts.memory_budget_gb) > 0:
        raise NimosefInputError("--memory-budget-gb", f"must be a positive number of GB, "
                                                      f"got {opts.memory_budget_gb}")
    if opts.n_frames is not None:
        _int_in("--n-frames", opts.n_frames, 2, None)
    if opts.ed_frame is not None:
        _int_in("--ed-frame", opts.ed_frame, 0, None)
    for name, point in (("--lv-center", opts.lv_center), ("--rv-point", opts.rv_point)):
        if point is not None and (len(point) != 3 or not all(_finite(v) for v in point)):
            raise NimosefInputError(name, f"must be 3 finite numbers (RAS mm), got {point}")
    load_prior(opts.prior, "cpu")
    if opts.refine and opts.slice_net:
        load_slice_net(opts.slice_net_path)


def check_cine(cine, opts, source: str) -> None:
    """Refuse a cine no heart can be segmented in: in-plane voxels outside
    [:data:`MIN_INPLANE_SPACING_MM`, :data:`MAX_INPLANE_SPACING_MM`] mm, a field of view
    under :data:`MIN_FIELD_OF_VIEW_MM`, or an ``--ed-frame`` past its last frame. ``source``
    names the input in the message."""
    spacing = np.asarray(cine.spacing_mm, np.float64)
    inplane = spacing[:2]
    if np.any(inplane < MIN_INPLANE_SPACING_MM) or np.any(inplane > MAX_INPLANE_SPACING_MM):
        raise NimosefInputError(source, f"in-plane voxel size "
                                             f"{np.round(inplane, 4).tolist()} mm is not a "
                                             f"cardiac cine MRI's ({MIN_INPLANE_SPACING_MM:g}-"
                                             f"{MAX_INPLANE_SPACING_MM:g} mm)")
    fov = inplane * np.asarray(cine.shape[:2], np.float64)
    if np.any(fov < MIN_FIELD_OF_VIEW_MM):
        raise NimosefInputError(source, f"field of view {np.round(fov, 1).tolist()} mm is "
                                             f"too small to hold a heart (at least "
                                             f"{MIN_FIELD_OF_VIEW_MM:g} mm)")
    if opts.ed_frame is not None and not 0 <= int(opts.ed_frame) < cine.n_frames:
        raise NimosefInputError("--ed-frame", f"must be in 0..{cine.n_frames - 1}")


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _int_in(name: str, value, lo: int, hi: int | None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) \
        and value >= lo and (hi is None or value <= hi)
    if not ok:
        span = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise NimosefInputError(name, f"must be {span}, got {value}")
