"""Re-sample a fitted subject (``subject.nimosef``) at a new z factor without fitting again."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from nimosef_engine.core.atomic import check_output_path
from nimosef_engine.core.device import resolve_device
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import resample_grid_z
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.io.nifti import save_nifti
from nimosef_engine.io.nifti_stream import NiftiFrameWriter
from nimosef_engine.pipeline.cycle_time import frame_spacing_ms
from nimosef_engine.pipeline.options import MAX_RES_FACTOR_Z
from nimosef_engine.pipeline.subject_file import (
    read_subject_file,
    subject_grid,
    subject_image,
    subject_prior,
    subject_slice_evidence,
    subject_slice_shift,
)
from nimosef_engine.refinement.frames import FrameRefinement, iter_refined_frames
from nimosef_engine.refinement.refine import REFINE_BETA
from nimosef_engine.sampling.fields import embed_frame
from nimosef_engine.sampling.memory import DEFAULT_MEMORY_BUDGET_GB, frame_bytes, plan_chunk

log = logging.getLogger(__name__)


def resample_subject(subject_path: str | Path, out_dir: str | Path, res_factor_z: int,
                     prior: str | Path | None = None, device: str = "auto",
                     clean: bool = True, reporter: ProgressReporter | None = None,
                     memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
                     first_frame: int | None = None, refine: bool = True,
                     slice_net: str | Path | None = None) -> dict[str, Path]:
    """Write ``seg_zF.nii.gz`` and ``rec_zF.nii.gz`` of a fitted subject into ``out_dir``.

    Frames are sampled, cleaned and appended to the files one at a time, in network chunks
    sized to keep the process within ``memory_budget_gb``. With ``first_frame`` K, frame K is
    sampled before the others and written alone as ``preview_zF.nii.gz`` (3D intensities),
    announced by a ``preview`` progress event, so a viewer can show the frame on screen while
    the rest of the cine is sampled. With ``refine``, labels are refined by the image the
    subject file keeps (:mod:`refine`), as segment-track did; a file without one (written with
    ``--no-refine``, or by an older version) gives the network's labels. The prior and the
    slice network are the bundled ones, or ``prior`` and ``slice_net``; never the paths the
    file records (:mod:`subject_file`). Everything is checked before the output folder is made.
    """
    if not 1 <= int(res_factor_z) <= MAX_RES_FACTOR_Z:
        raise NimosefInputError("res_factor_z", f"must be between 1 and {MAX_RES_FACTOR_Z}, "
                                                f"got {res_factor_z}")
    out_dir = check_output_path(out_dir)
    subj = read_subject_file(subject_path)
    dev = resolve_device(device)
    ckpt, net, pid = subject_prior(subj, subject_path, prior, dev)
    if subj["code"].shape[0] != net.cfg.code_dim:
        raise NimosefInputError(subject_path, f"its code has {subj['code'].shape[0]} values, "
                                              f"the prior's {net.cfg.code_dim}")
    sd = subject_grid(subj)
    if first_frame is not None and not 0 <= int(first_frame) < sd.n_frames:
        raise NimosefInputError("first_frame", f"must be in 0..{sd.n_frames - 1}")
    image = subject_image(subj, sd, subject_path) if refine else None
    shift = subject_slice_shift(subj, sd, subject_path) if image is not None else None
    evidence = subject_slice_evidence(subj, sd, subject_path, dev, slice_net) \
        if image is not None else None
    f = int(res_factor_z)
    crop, src = int(np.prod(sd.grid_shape)), int(np.prod(sd.source_shape))
    # the preview frame's labels and intensities are held until the stream reaches it
    held = src * f * (1 + 4) if first_frame is not None else 0
    plan = plan_chunk(memory_budget_gb, net,
                      frame_bytes(crop * f, src * f, refine=image is not None) + held)
    log.info(plan.describe())
    full_aff, full_shape = resample_grid_z(sd.source_affine_ras, sd.source_shape, f)
    dt = frame_spacing_ms(subj.get("time_ms"))
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"seg": out_dir / f"seg_z{f}.nii.gz", "rec": out_dir / f"rec_z{f}.nii.gz"}
    shape4 = (*full_shape, sd.n_frames)
    code, lo = subj["code"].to(dev), sd.intensity_range[0]
    refinement = FrameRefinement(image, evidence, shift, clean=clean,
                                 beta=float(subj.get("refine_beta", REFINE_BETA)))

    # one pass over the frames; with a preview, frame K comes first and is held until the
    # stream reaches its place in the files
    order = list(range(sd.n_frames))
    if first_frame is not None:
        order.remove(int(first_frame))
        order.insert(0, int(first_frame))

    def frames():
        """(index, labels, intensities) of whole frames at z factor f, in ``order``."""
        for fr, labels, _ in iter_refined_frames(net, code, sd, f, dev, subj["pose_matrix"],
                                                 refinement, reporter, "resample",
                                                 chunk=plan.chunk, frames=order):
            rec = embed_frame(fr.intensity, sd, f, fill=lo)
            if fr.index == first_frame and "preview" not in paths:
                paths["preview"] = save_nifti(out_dir / f"preview_z{f}.nii.gz", rec, full_aff)
                if reporter is not None:
                    reporter.update("preview", 1.0, f"frame {fr.index} ready: {paths['preview']}")
            yield fr.index, embed_frame(labels, sd, f), rec

    try:
        stream = frames()
        first = next(stream) if first_frame is not None else None
        with NiftiFrameWriter(paths["seg"], shape4, np.uint8, full_aff, dt) as w_seg, \
                NiftiFrameWriter(paths["rec"], shape4, np.float32, full_aff, dt) as w_rec:
            for k in range(sd.n_frames):
                _, seg, rec = first if first is not None and k == first[0] else next(stream)
                w_seg.write_frame(seg)
                w_rec.write_frame(rec)
    except BaseException:  # a cancel or an error: no preview alone, no empty folder made here
        if "preview" in paths:
            paths["preview"].unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    return paths
