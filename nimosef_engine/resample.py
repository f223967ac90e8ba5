"""Re-sample a fitted subject (``subject.nimosef``) at a new z factor without fitting again."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from nimosef_engine.atomic import check_output_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.device import resolve_device
from nimosef_engine.errors import NimosefInputError
from nimosef_engine.geometry import HeartFrame, crop_affine, resample_grid_z
from nimosef_engine.io.nifti import save_nifti
from nimosef_engine.io.nifti_stream import NiftiFrameWriter
from nimosef_engine.progress import ProgressReporter
from nimosef_engine.refine import REFINE_BETA, final_labels
from nimosef_engine.sample import (
    DEFAULT_MEMORY_BUDGET_GB,
    embed_frame,
    frame_bytes,
    iter_frames,
    plan_chunk,
)
from nimosef_engine.slice_likelihood import SliceEvidence
from nimosef_engine.subject_file import read_subject_file, subject_prior

log = logging.getLogger(__name__)


def load_subject_file(path: str | Path) -> dict:
    """Read a ``subject.nimosef`` file written by segment-track, safely and checked
    (:func:`subject_file.read_subject_file`)."""
    return read_subject_file(path)


def subject_grid(subj: dict) -> SubjectData:
    """The crop geometry of a fitted subject (no image data: intensities are zeros)."""
    aff = np.asarray(subj["input_affine_ras"], np.float64)
    shape = tuple(int(v) for v in subj["crop_shape"])
    n_t = len(subj["model_times"])
    return SubjectData(
        subject_id="subject", intensity=np.zeros((n_t, *shape), np.float32),
        frame_times=np.asarray(subj["model_times"], np.float32),
        crop_affine_ras=crop_affine(aff, subj["crop_offset"]),
        heart=HeartFrame.from_dict(subj["heart_frame"]),
        frame_indices=np.arange(n_t, dtype=np.int32), n_frames_cycle=n_t,
        source_shape=tuple(int(v) for v in subj["input_shape"]),
        crop_offset=tuple(int(v) for v in subj["crop_offset"]), source_affine_ras=aff,
        intensity_range=tuple(float(v) for v in subj["intensity_range"]))


def subject_image(subj: dict, sd: SubjectData, path) -> np.ndarray | None:
    """The normalised uint8 image ``(T, x, y, z)`` a subject file keeps for refinement, or
    None (logged) if it keeps none; raises if its shape does not match the crop."""
    image = subj.get("image_u8")
    if image is None:
        log.info("%s keeps no image: labels from the network alone", path)
        return None
    image = np.asarray(image, np.uint8)
    if image.shape != (sd.n_frames, *sd.grid_shape):
        raise NimosefInputError(path, f"its image {image.shape} does not match its crop "
                                      f"({sd.n_frames}, {', '.join(map(str, sd.grid_shape))})")
    return image


def subject_slice_shift(subj: dict, sd: SubjectData, path) -> np.ndarray | None:
    """The in-plane slice shifts ``(Z, 2)`` a subject file keeps (:func:`refine.slice_shifts`),
    or None if it keeps none; raises if they do not match the crop's slices."""
    shift = subj.get("slice_shift")
    if shift is None:
        return None
    shift = np.asarray(shift, np.float64)
    if shift.shape != (sd.grid_shape[2], 2):
        raise NimosefInputError(path, f"its slice shifts {shift.shape} do not match its "
                                      f"{sd.grid_shape[2]} slices")
    return shift


def subject_slice_evidence(subj: dict, sd: SubjectData, path, device,
                           slice_net: str | Path | None = None) -> SliceEvidence | None:
    """The slice network a subject file's labels were refined with (:mod:`slice_likelihood`),
    or None if they were not: ``slice_net`` when the user gives one, else the bundled one;
    raises if its id is not the file's. The path the file records is named, never followed."""
    want = subj.get("slice_net_id")
    if want is None:
        return None
    evidence = SliceEvidence.load(slice_net, device, sd)
    if evidence.net_id != want:
        if slice_net:
            raise NimosefInputError(path, f"was refined with slice network {want}, not "
                                          f"{evidence.net_id}: pass the right --slice-net")
        hint = f" (it was {subj['slice_net_path']})" if subj.get("slice_net_path") else ""
        raise NimosefInputError(path, f"was refined with slice network {want}, not the "
                                      f"bundled {evidence.net_id}: pass that network with "
                                      f"--slice-net{hint}, or use --no-refine")
    return evidence


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
    from nimosef_engine.segment_track import frame_spacing_ms

    if not 1 <= int(res_factor_z) <= 8:
        raise NimosefInputError("--res-factor-z", f"must be between 1 and 8, got {res_factor_z}")
    out_dir = check_output_path(out_dir)
    subj = load_subject_file(subject_path)
    dev = resolve_device(device)
    ckpt, net, pid = subject_prior(subj, subject_path, prior, dev)
    if subj["code"].shape[0] != net.cfg.code_dim:
        raise NimosefInputError(subject_path, f"its code has {subj['code'].shape[0]} values, "
                                              f"the prior's {net.cfg.code_dim}")
    sd = subject_grid(subj)
    if first_frame is not None and not 0 <= int(first_frame) < sd.n_frames:
        raise NimosefInputError("--first-frame", f"must be in 0..{sd.n_frames - 1}")
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
    beta = float(subj.get("refine_beta", REFINE_BETA))  # files before the prior's gating

    # one pass over the frames; with a preview, frame K comes first and is held until the
    # stream reaches its place in the files
    order = list(range(sd.n_frames))
    if first_frame is not None:
        order.remove(int(first_frame))
        order.insert(0, int(first_frame))

    def frames():
        """(index, labels, intensities) of whole frames at z factor f, in ``order``; the
        preview frame's intensities are written before its labels are made."""
        for fr in iter_frames(net, code, sd, f, dev, subj["pose_matrix"], reporter,
                              "resample", probs=image is not None, chunk=plan.chunk,
                              frames=order, slice_shift=shift):
            rec = embed_frame(fr.intensity, sd, f, fill=lo)
            if fr.index == first_frame and "preview" not in paths:
                paths["preview"] = save_nifti(out_dir / f"preview_z{f}.nii.gz", rec, full_aff)
                if reporter is not None:
                    reporter.update("preview", 1.0, f"frame {fr.index} ready: {paths['preview']}")
            img = None if image is None else image[fr.index]
            sp = None if evidence is None else evidence.frame(img)
            labels = final_labels(fr, img, f, clean, sp, beta)[0]
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
