"""Re-sample a fitted subject (``subject.nimosef``) at a new z factor without fitting again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nimosef_engine.data.subject import SubjectData
from nimosef_engine.device import resolve_device
from nimosef_engine.errors import NimosefInputError
from nimosef_engine.geometry import HeartFrame, crop_affine, resample_grid_z
from nimosef_engine.io.nifti import save_nifti
from nimosef_engine.postprocess import clean_labels_4d
from nimosef_engine.progress import ProgressReporter


def load_subject_file(path: str | Path) -> dict:
    """Read a ``subject.nimosef`` file written by segment-track."""
    path = Path(path)
    if not path.is_file():
        raise NimosefInputError(path, "subject file not found")
    try:
        subj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise NimosefInputError(path, f"not a readable subject file ({exc.__class__.__name__})") \
            from None
    if not isinstance(subj, dict) or subj.get("format") != "nimosef-subject/1":
        raise NimosefInputError(path, "not a NIMOSEF subject file (format nimosef-subject/1)")
    return subj


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


def resample_subject(subject_path: str | Path, out_dir: str | Path, res_factor_z: int,
                     prior: str | Path | None = None, device: str = "auto",
                     clean: bool = True,
                     reporter: ProgressReporter | None = None) -> dict[str, Path]:
    """Write ``seg_zF.nii.gz`` and ``rec_zF.nii.gz`` of a fitted subject into ``out_dir``."""
    from nimosef_engine.sample import embed_in_source, sample_fields
    from nimosef_engine.segment_track import load_prior

    if not 1 <= int(res_factor_z) <= 8:
        raise NimosefInputError("--res-factor-z", "must be between 1 and 8")
    subj = load_subject_file(subject_path)
    dev = resolve_device(device)
    ckpt, net, pid = load_prior(prior or subj.get("prior_path"), dev)
    if pid != subj["prior_id"]:
        raise NimosefInputError(subject_path, f"was fitted with prior {subj['prior_id']}, "
                                              f"not {pid}: pass the right --prior")
    sd = subject_grid(subj)
    f = int(res_factor_z)
    seg, rec, _, _ = sample_fields(net, subj["code"].to(dev), sd, f, dev,
                                   subj["pose_matrix"], reporter, "resample")
    if clean:
        seg = clean_labels_4d(seg)
    full_aff, _ = resample_grid_z(sd.source_affine_ras, sd.source_shape, f)
    tms = subj.get("time_ms")
    dt = float(np.median(np.diff(tms))) if tms and len(tms) > 1 else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "seg": save_nifti(out_dir / f"seg_z{f}.nii.gz", embed_in_source(seg, sd, f), full_aff,
                          dt),
        "rec": save_nifti(out_dir / f"rec_z{f}.nii.gz",
                          embed_in_source(rec, sd, f, fill=sd.intensity_range[0]), full_aff, dt),
    }
    return paths


