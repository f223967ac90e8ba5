"""Segment & Track's writers: the per-frame loop that samples the fitted fields, refines and
cleans the labels and streams every frame to its NIfTI files and meshes; the volumes table,
the boundary motion table and the summary."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nimosef_engine.core.atomic import atomic_path
from nimosef_engine.core.geometry import resample_grid_z
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.evaluation.metrics import class_agreement, volumes_ml
from nimosef_engine.io.cine import Cine
from nimosef_engine.io.nifti_stream import NiftiFrameWriter
from nimosef_engine.pipeline.cycle_time import frame_spacing_ms
from nimosef_engine.pipeline.options import SegmentTrackOptions
from nimosef_engine.refinement.frames import FrameRefinement, iter_refined_frames
from nimosef_engine.sampling.fields import crop_grid, embed_frame, slice_shift_ras
from nimosef_engine.sampling.memory import output_frame_bytes, plan_chunk
from nimosef_engine.sampling.tables import boundary_table, displacement_table

log = logging.getLogger(__name__)


def sample_and_write(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                     cine: Cine, out: Path, opts: SegmentTrackOptions, device,
                     reporter: ProgressReporter, timings: dict[str, float],
                     refinement: FrameRefinement
                     ) -> tuple[np.ndarray, list[dict], list[dict[str, float] | None] | None]:
    """Frame by frame: sample at the native resolution and at z factor F, refine and clean
    the labels (:func:`refinement.frames.iter_refined_frames`), write the meshes, append the
    frame to ``seg.nii.gz``, ``seg_zF.nii.gz`` and ``rec_zF.nii.gz`` and measure the volumes.
    Peak memory: one frame plus a chunk sized by ``opts.memory_budget_gb``.

    Returns the cleaned native labels ``(T, x, y, z)`` uint8 on the crop grid, the per-frame
    volumes (mL) and, with a slice network, each frame's agreement of the prior with it
    (Dice per class, :func:`evaluation.metrics.class_agreement`; else None). Adds the seconds
    spent to ``timings`` (sample, meshes, write).
    """
    if opts.meshes:  # VTK is loaded only when meshes are asked for
        from nimosef_engine.io.meshes import write_frame_meshes

    f, n_t = int(opts.res_factor_z), sd.n_frames
    refine = refinement.image is not None
    plan = plan_chunk(opts.memory_budget_gb, net, output_frame_bytes(
        sd.grid_shape, cine.shape, f, opts.meshes, n_t, refine))
    log.info(plan.describe())
    aff1, aff_f = crop_grid(sd, 1)[0], crop_grid(sd, f)[0]
    full_aff_f, full_shape_f = resample_grid_z(cine.affine_ras, cine.shape, f)
    dt_ms = frame_spacing_ms(cine.trigger_times_ms)
    lo = sd.intensity_range[0]
    frames_f = iter_refined_frames(net, code, sd, f, device, pose_m, refinement, reporter,
                                   "sample", probs=opts.meshes, chunk=plan.chunk)
    pairs = ((fr, fr) for fr in frames_f) if f == 1 else zip(
        iter_refined_frames(net, code, sd, 1, device, pose_m, refinement, chunk=plan.chunk),
        frames_f, strict=True)
    seg1_all = np.empty((n_t, *sd.grid_shape), np.uint8)
    vols: list[dict] = []
    agreement: list[dict[str, float]] | None = None if refinement.evidence is None else []
    for key in ("sample", "meshes", "write"):
        timings[key] = 0.0
    with contextlib.ExitStack() as stack:
        def writer(name: str, shape, dtype, affine) -> NiftiFrameWriter:
            return stack.enter_context(
                NiftiFrameWriter(out / name, (*shape, n_t), dtype, affine, dt_ms))

        w_seg1 = writer("seg.nii.gz", cine.shape, np.uint8, cine.affine_ras)
        w_seg_f = writer(f"seg_z{f}.nii.gz", full_shape_f, np.uint8, full_aff_f)
        w_rec_f = writer(f"rec_z{f}.nii.gz", full_shape_f, np.float32, full_aff_f)
        tick = time.perf_counter()
        for (fr1, seg1, _), (fr_f, seg_f, probs_f) in pairs:
            seg1_all[fr_f.index] = seg1
            if agreement is not None:  # one entry per frame, None where it cannot be had
                agreement.append(None if fr1.probs is None else class_agreement(
                    fr1.probs.argmax(0), refinement.slice_probs(fr1.index).argmax(0)))
            tick = _lap(timings, "sample", tick)
            if opts.meshes:
                write_frame_meshes(probs_f, aff_f, out / "meshes", fr_f.index)
                tick = _lap(timings, "meshes", tick)
            w_seg1.write_frame(embed_frame(seg1, sd, 1))
            w_seg_f.write_frame(embed_frame(seg_f, sd, f))
            w_rec_f.write_frame(embed_frame(fr_f.intensity, sd, f, fill=lo))
            vols.append(volumes_ml(seg1, aff1))
            tick = _lap(timings, "write", tick)
        reporter.update("write", 0.0, "writing volumes and tables")
    _lap(timings, "write", tick)
    return seg1_all, vols, agreement


def volumes_table(vols: list[dict], cine: Cine) -> pd.DataFrame:
    """``volumes.csv``: one row per frame (frame, time as a cycle fraction, time_ms, LV_mL,
    MYO_mL, RV_mL) from the per-frame volumes ``vols`` (:func:`evaluation.metrics.volumes_ml`)."""
    tms = cine.trigger_times_ms
    return pd.DataFrame({
        "frame": np.arange(len(vols)),
        "time": np.asarray(cine.frame_times, np.float64),
        "time_ms": tms if tms is not None else np.full(len(vols), np.nan),
        "LV_mL": [v["LV"] for v in vols], "MYO_mL": [v["MYO"] for v in vols],
        "RV_mL": [v["RV"] for v in vols]})


def cycle_duration_ms(cine: Cine) -> float | None:
    """The cine's cycle length (ms) from its trigger times, or None without them."""
    tms = cine.trigger_times_ms
    dt_ms = frame_spacing_ms(tms)
    return float(tms[-1] + dt_ms - tms[0]) if dt_ms else None


def boundary_motion_table(net, code: torch.Tensor, pose_m: torch.Tensor, sd: SubjectData,
                          seg1: np.ndarray, ed: int, cine: Cine, shift: np.ndarray | None,
                          device) -> pd.DataFrame:
    """``motion.parquet``: the displacement (RAS mm) of every boundary voxel of the ED labels
    ``seg1[ed]`` at every frame: frame, time, label, x, y, z (position at the frame), ux,
    uy, uz, x0, y0, z0 (position at ED)."""
    aff1 = crop_grid(sd, 1)[0]
    bt = boundary_table(seg1[[ed]], aff1, [0.0])
    pts = bt[["x", "y", "z"]].to_numpy()
    disp = displacement_table(net, code, sd.heart, pts, bt["label"].to_numpy(), sd.frame_times,
                              None, device, pose_m, slice_shift_ras(pts, aff1, shift))
    disp["time"] = np.asarray(cine.frame_times)[disp["frame"].to_numpy()]
    return disp[["frame", "time", "label", "x", "y", "z", "ux", "uy", "uz", "x0", "y0", "z0"]]


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` atomically as CSV or parquet (by the suffix of ``path``)."""
    with atomic_path(path) as p:
        if path.suffix == ".parquet":
            df.to_parquet(p, index=False)
        else:
            df.to_csv(p, index=False)


def _lap(timings: dict[str, float], key: str, since: float) -> float:
    now = time.perf_counter()
    timings[key] += now - since
    return now
