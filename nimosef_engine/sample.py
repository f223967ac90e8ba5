"""Sampling the fitted fields: labels, intensity and displacement at any points and times."""

from __future__ import annotations

import numpy as np
import torch

from nimosef_engine.data.subject import SubjectData
from nimosef_engine.geometry import HeartFrame, apply_affine, grid_ijk, resample_grid_z

DEFAULT_CHUNK = 16384


@torch.inference_mode()
def predict_points(net, code: torch.Tensor, coords_norm: torch.Tensor, t_cycle: float,
                   chunk: int = DEFAULT_CHUNK, with_motion: bool = False,
                   probs: bool = False) -> dict[str, torch.Tensor]:
    """Evaluate the network at ``coords_norm (N,3)`` and time ``t_cycle``, in chunks.

    Returns ``labels (N,)`` uint8 (argmax), ``intensity (N,)`` float32 and, on request,
    ``displacement (N,3)`` (normalised units) and ``probs (N,C)``. Output buffers are
    allocated once; each chunk is written into them.
    """
    dev = coords_norm.device
    n = coords_norm.shape[0]
    labels = torch.empty(n, dtype=torch.uint8, device=dev)
    inten = torch.empty(n, dtype=torch.float32, device=dev)
    disp = torch.empty((n, 3), dtype=torch.float32, device=dev) if with_motion else None
    prob = None
    t_buf = torch.full((min(chunk, n), 1), float(t_cycle), device=dev)
    for i in range(0, n, chunk):
        c = coords_norm[i:i + chunk]
        out = net(c, t_buf[: c.shape[0]], code, with_motion=with_motion)
        labels[i:i + c.shape[0]] = out.seg_logits.argmax(-1).to(torch.uint8)
        inten[i:i + c.shape[0]] = out.intensity.float()
        if with_motion:
            disp[i:i + c.shape[0]] = out.displacement.float()
        if probs:
            if prob is None:
                prob = torch.empty((n, out.seg_logits.shape[1]), dtype=torch.float32, device=dev)
            prob[i:i + c.shape[0]] = out.seg_logits.float().softmax(-1)
    res = {"labels": labels, "intensity": inten}
    if with_motion:
        res["displacement"] = disp
    if probs:
        res["probs"] = prob
    return res


def grid_coords_norm(shape: tuple[int, int, int], affine_ras: np.ndarray,
                     heart: HeartFrame) -> np.ndarray:
    """``(X*Y*Z, 3)`` float32 normalised heart coordinates of every voxel of a grid (C order)."""
    return heart.ras_to_norm(apply_affine(affine_ras, grid_ijk(shape))).astype(np.float32)


def pose_fn(pose_matrix: torch.Tensor | None):
    """The coordinate map of a fitted pose (4x4, normalised subject -> prior), or None."""
    if pose_matrix is None:
        return None
    m = pose_matrix.float()
    return lambda x: x @ m[:3, :3].T.to(x.device) + m[:3, 3].to(x.device)


@torch.inference_mode()
def sample_fields(net, code: torch.Tensor, sd: SubjectData, factor: int, device="cpu",
                  pose_matrix: torch.Tensor | None = None, reporter=None,
                  stage: str = "sample", probs: bool = False):
    """Labels, intensities (the input's units) and optionally class probabilities on the
    subject's crop grid at z factor ``factor``, at its frame times.

    Returns ``(labels (T, x, y, z*F) uint8, intensity (T, x, y, z*F) float32,
    probs (T, C, x, y, z*F) or None, affine_ras of that grid)``.
    """
    aff, shape = resample_grid_z(sd.crop_affine_ras, sd.grid_shape, factor)
    coords = torch.from_numpy(grid_coords_norm(shape, aff, sd.heart)).to(device)
    fn = pose_fn(pose_matrix)
    if fn is not None:
        coords = fn(coords)
    code = code.to(device)
    n_t = sd.n_frames
    labels = np.empty((n_t, *shape), np.uint8)
    inten = np.empty((n_t, *shape), np.float32)
    prob = np.empty((n_t, 4, *shape), np.float32) if probs else None
    lo, hi = sd.intensity_range
    for f, t in enumerate(sd.frame_times):
        if reporter is not None:
            reporter.update(stage, f / n_t, f"frame {f + 1}/{n_t}")
        out = predict_points(net, code, coords, float(t), probs=probs)
        labels[f] = out["labels"].cpu().numpy().reshape(shape)
        inten[f] = out["intensity"].cpu().numpy().reshape(shape) * (hi - lo) + lo
        if probs:
            prob[f] = np.moveaxis(out["probs"].cpu().numpy().reshape(*shape, -1), -1, 0)
    return labels, inten, prob, aff


def embed_in_source(crop: np.ndarray, sd: SubjectData, factor: int, fill=0) -> np.ndarray:
    """(T, x, y, z*F) crop-grid arrays -> (X, Y, Z*F, T) on the subject's whole source grid at
    z factor ``factor`` (NIfTI axis order), ``fill`` outside the crop."""
    src = sd.source_shape if any(sd.source_shape) else sd.grid_shape
    full = np.full((crop.shape[0], src[0], src[1], src[2] * factor), fill, crop.dtype)
    ox, oy, oz = sd.crop_offset
    full[:, ox:ox + crop.shape[1], oy:oy + crop.shape[2],
         oz * factor:oz * factor + crop.shape[3]] = crop
    return np.moveaxis(full, 0, -1)
