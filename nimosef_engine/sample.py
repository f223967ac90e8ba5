"""Sampling the fitted fields: labels, intensity and displacement at any points and times."""

from __future__ import annotations

import numpy as np
import torch

from nimosef_engine.geometry import HeartFrame, apply_affine, grid_ijk

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


@torch.inference_mode()
def predict_grid(net, code: torch.Tensor, shape: tuple[int, int, int], affine_ras: np.ndarray,
                 heart: HeartFrame, frame_times, device="cpu", chunk: int = DEFAULT_CHUNK,
                 coords_fn=None, reporter=None) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(T,X,Y,Z)`` uint8 and intensity ``(T,X,Y,Z)`` float32 on a scanner grid."""
    coords = torch.from_numpy(grid_coords_norm(shape, affine_ras, heart)).to(device)
    if coords_fn is not None:
        coords = coords_fn(coords)
    n_t = len(frame_times)
    labels = np.empty((n_t, *shape), np.uint8)
    inten = np.empty((n_t, *shape), np.float32)
    for f, t in enumerate(frame_times):
        if reporter is not None:
            reporter.update("sample", f / n_t, f"frame {f + 1}/{n_t}")
        out = predict_points(net, code, coords, float(t), chunk)
        labels[f] = out["labels"].cpu().numpy().reshape(shape)
        inten[f] = out["intensity"].cpu().numpy().reshape(shape)
    return labels, inten
