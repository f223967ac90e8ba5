"""Generate a fitted subject's volumes and point tables in its true scanner geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nimosef_engine.core.atomic import atomic_path, atomic_write_text
from nimosef_engine.core.geometry import HeartFrame, apply_affine, resample_grid_z
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.io.nifti import save_nifti
from nimosef_engine.losses.boundary import boundary_mask
from nimosef_engine.sampling.fields import embed_in_source, pose_fn, predict_points, sample_fields
from nimosef_engine.sampling.memory import DEFAULT_CHUNK


def boundary_table(labels_4d: np.ndarray, affine_ras: np.ndarray, frame_times,
                   frame_indices=None) -> pd.DataFrame:
    """Boundary voxels of each class and frame: ``frame, time, label, x, y, z`` (RAS mm).

    ``labels_4d`` is (T, X, Y, Z).
    """
    rows = []
    for f in range(labels_4d.shape[0]):
        lab = torch.from_numpy(labels_4d[f].astype(np.int64))
        for c in (1, 2, 3):
            ijk = torch.nonzero(boundary_mask(lab, c)).numpy()
            if len(ijk) == 0:
                continue
            xyz = apply_affine(affine_ras, ijk)
            rows.append(pd.DataFrame({
                "frame": int(frame_indices[f] if frame_indices is not None else f),
                "time": float(frame_times[f]), "label": c,
                "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}))
    cols = ["frame", "time", "label", "x", "y", "z"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def model_vectors_to_ras(u: np.ndarray, heart: HeartFrame,
                         pose_matrix: torch.Tensor | None = None) -> np.ndarray:
    """Displacements ``(..., 3)`` output by the network (normalised units, in the prior's frame
    when a pose was fitted) -> RAS mm vectors of the subject."""
    u = np.asarray(u, np.float64)
    if pose_matrix is not None:
        lin = pose_matrix[:3, :3].double().cpu().numpy()
        scale = float(np.cbrt(abs(np.linalg.det(lin))))
        rot_back = np.linalg.inv(lin) * scale  # prior-frame vectors -> subject frame
        u = u @ rot_back.T / scale
    return heart.vectors_norm_to_ras(u)


@torch.inference_mode()
def point_displacements(net, code: torch.Tensor, heart: HeartFrame, points_ras: np.ndarray,
                        frame_times, device="cpu", pose_matrix: torch.Tensor | None = None,
                        offset_ras: np.ndarray | None = None, chunk: int = DEFAULT_CHUNK):
    """Displacement ``(N, 3)`` RAS mm of ED points ``points_ras (N, 3)`` at each of
    ``frame_times``, one array per time (a generator). ``offset_ras (N, 3)``: the network
    describes point ``n`` at ``points_ras[n] - offset_ras[n]`` (its slice's in-plane shift,
    :func:`sampling.fields.slice_shift_ras`)."""
    model_pts = points_ras if offset_ras is None else points_ras - offset_ras
    coords = torch.from_numpy(heart.ras_to_norm(model_pts).astype(np.float32)).to(device)
    fn = pose_fn(pose_matrix)
    coords_q = fn(coords) if fn is not None else coords
    for t in frame_times:
        u = predict_points(net, code, coords_q, float(t), chunk=chunk,
                           with_motion=True)["displacement"]
        yield model_vectors_to_ras(u.cpu().numpy(), heart, pose_matrix)


def displacement_table(net, code: torch.Tensor, heart: HeartFrame, points_ras: np.ndarray,
                       labels: np.ndarray, frame_times, frame_indices=None, device="cpu",
                       pose_matrix: torch.Tensor | None = None,
                       offset_ras: np.ndarray | None = None) -> pd.DataFrame:
    """Motion of ED boundary points: ``frame, time, label, x0, y0, z0`` (ED position) and
    ``x, y, z`` (moved position), ``ux, uy, uz`` (RAS mm) for every frame. ``offset_ras
    (N, 3)``: the network describes point ``n`` at ``points_ras[n] - offset_ras[n]`` (its
    slice's in-plane shift, :func:`sampling.fields.slice_shift_ras`)."""
    rows = []
    for f, (t, u_ras) in enumerate(zip(frame_times, point_displacements(
            net, code, heart, points_ras, frame_times, device, pose_matrix, offset_ras),
            strict=True)):
        moved = points_ras + u_ras
        rows.append(pd.DataFrame({
            "frame": int(frame_indices[f] if frame_indices is not None else f),
            "time": float(t), "label": labels,
            "x0": points_ras[:, 0], "y0": points_ras[:, 1], "z0": points_ras[:, 2],
            "x": moved[:, 0], "y": moved[:, 1], "z": moved[:, 2],
            "ux": u_ras[:, 0], "uy": u_ras[:, 1], "uz": u_ras[:, 2]}))
    return pd.concat(rows, ignore_index=True)


def generate_subject(net, code: torch.Tensor, sd: SubjectData, out_dir: str | Path,
                     res_factor_z: int = 1, device="cpu",
                     pose_matrix: torch.Tensor | None = None) -> dict[str, Path]:
    """Write ``{id}_rec/_seg/_seg_gt/_im_gt.nii.gz`` (4D, source grid at ``res_factor_z``),
    ``{id}_pred/_true_boundaries.parquet``, ``{id}_displacement.parquet``, ``{id}_frames.json``.

    Volumes cover the whole source field of view (zero outside the ROI crop) with the true
    scanner affine; at factor F each slice is split into F thinner slices over the same slab.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sid, f = sd.subject_id, int(res_factor_z)
    src_affine = sd.source_affine_ras if sd.source_affine_ras is not None else sd.crop_affine_ras
    src_shape = sd.source_shape if any(sd.source_shape) else sd.grid_shape
    affine_f, _ = resample_grid_z(src_affine, src_shape, f)
    labels, rec, _, crop_aff_f = sample_fields(net, code, sd, f, device, pose_matrix)
    paths = {
        "seg": save_nifti(out_dir / f"{sid}_seg.nii.gz", embed_in_source(labels, sd, f),
                          affine_f),
        "rec": save_nifti(out_dir / f"{sid}_rec.nii.gz", embed_in_source(rec, sd, f),
                          affine_f),
    }
    lo, hi = sd.intensity_range
    im_gt = np.repeat(sd.intensity * (hi - lo) + lo, f, axis=3).astype(np.float32)
    paths["im_gt"] = save_nifti(out_dir / f"{sid}_im_gt.nii.gz", embed_in_source(im_gt, sd, f),
                                affine_f)
    if sd.labels is not None:
        gt = embed_in_source(np.repeat(sd.labels, f, axis=3), sd, f)
        paths["seg_gt"] = save_nifti(out_dir / f"{sid}_seg_gt.nii.gz", gt, affine_f)
        true_b = boundary_table(np.repeat(sd.labels, f, axis=3), crop_aff_f, sd.frame_times,
                                sd.frame_indices)
        paths["true_boundaries"] = _write_parquet(
            true_b, out_dir / f"{sid}_true_boundaries.parquet")
    pred_b = boundary_table(labels, crop_aff_f, sd.frame_times, sd.frame_indices)
    paths["pred_boundaries"] = _write_parquet(pred_b, out_dir / f"{sid}_pred_boundaries.parquet")
    ed = int(np.argmin(sd.frame_times))
    ed_pts = pred_b[pred_b["frame"] == int(sd.frame_indices[ed])]
    disp = displacement_table(net, code.to(device), sd.heart, ed_pts[["x", "y", "z"]].to_numpy(),
                              ed_pts["label"].to_numpy(), sd.frame_times, sd.frame_indices,
                              device, pose_matrix)
    paths["displacement"] = _write_parquet(disp, out_dir / f"{sid}_displacement.parquet")
    ref = sd.labels if sd.labels is not None else labels
    lv = [(ref[t] == 1).sum() for t in range(ref.shape[0])]
    frames = {"frame_times": [float(t) for t in sd.frame_times],
              "frame_indices": [int(i) for i in sd.frame_indices],
              "n_frames_cycle": int(sd.n_frames_cycle), "ed_index": ed,
              "es_index": int(np.argmin(lv)) if len(lv) > 1 else ed,
              "cycle_ms": None, "res_factor_z": f}
    paths["frames"] = out_dir / f"{sid}_frames.json"
    atomic_write_text(paths["frames"], json.dumps(frames, indent=1))
    return paths


def _write_parquet(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path
