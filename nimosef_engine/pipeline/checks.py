"""Segment-track's checks of its options and of the cine, before any work is done.

:func:`check_models` runs before the cine is read (the prior and the slice network readable
and fitting their models); :func:`check_cine` right after it is read (a voxel size no cardiac
cine MRI has, a field of view too small to hold a heart); :func:`check_memory_budget` once the
prior is loaded.
"""

from __future__ import annotations

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.data.roi import roi_box_at
from nimosef_engine.io.cine import Cine
from nimosef_engine.model.bundled import load_prior, load_slice_net
from nimosef_engine.pipeline.options import SegmentTrackOptions
from nimosef_engine.sampling.memory import output_frame_bytes, plan_chunk

# In-plane pixel size of a cardiac cine MRI: acquired at about 1-2 mm, reconstructed down to
# about 0.6 mm; 0.3 mm is finer than any cine, 5 mm coarser than any. The 160 mm ROI of the
# prior at 0.3 mm is already 533 pixels a side.
MIN_INPLANE_SPACING_MM = 0.3
MAX_INPLANE_SPACING_MM = 5.0
# An adult heart (LV and RV) spans about 100 mm across: a smaller field of view cannot hold it.
MIN_FIELD_OF_VIEW_MM = 100.0


def check_models(opts: SegmentTrackOptions) -> None:
    """Refuse an unreadable prior or slice network before the cine is read, so that a bad
    ``slice_net_path`` is refused before minutes of fitting (the numbers of ``opts`` were
    checked when it was made: :class:`pipeline.options.SegmentTrackOptions`)."""
    load_prior(opts.prior, "cpu")
    if opts.refine and opts.slice_net:
        load_slice_net(opts.slice_net_path)


def check_cine(cine, opts, source: str) -> None:
    """Refuse a cine no heart can be segmented in: in-plane voxels outside
    [:data:`MIN_INPLANE_SPACING_MM`, :data:`MAX_INPLANE_SPACING_MM`] mm, a field of view
    under :data:`MIN_FIELD_OF_VIEW_MM`, or an ``ed_frame`` past its last frame. ``source``
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
        raise NimosefInputError("ed_frame", f"must be in 0..{cine.n_frames - 1}")


def check_memory_budget(cine: Cine, net, opts: SegmentTrackOptions) -> None:
    """Refuse a budget too small for one frame of output now rather than after fitting: what
    is in use after loading, plus the normalised crop and its fitting tensors (float32, all
    frames), plus :func:`output_frame_bytes`. :func:`sample_and_write` checks again."""
    _, crop_shape = roi_box_at((0, 0, 0), cine.shape, cine.affine_ras, opts.roi_mm)
    held_for_fit = 2 * 4 * cine.n_frames * int(np.prod(crop_shape))
    plan_chunk(opts.memory_budget_gb, net, held_for_fit + output_frame_bytes(
        crop_shape, cine.shape, int(opts.res_factor_z), opts.meshes, cine.n_frames,
        opts.refine))
