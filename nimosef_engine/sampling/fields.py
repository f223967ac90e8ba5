"""Sampling the fitted fields: labels, intensity and displacement at any points and times.

Whole cines are sampled one frame at a time (:func:`iter_frames`) with the network evaluated
in chunks of points; :func:`sampling.memory.plan_chunk` sizes the chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nimosef_engine.core.geometry import (
    HeartFrame,
    apply_affine,
    grid_ijk,
    interpolate_slices,
    ras_to_voxel,
    resample_grid_z,
)
from nimosef_engine.core.progress import check_cancelled
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.sampling.memory import DEFAULT_CHUNK


@torch.inference_mode()
def predict_points(net, code: torch.Tensor, coords_norm: torch.Tensor, t_cycle: float,
                   chunk: int = DEFAULT_CHUNK, with_motion: bool = False,
                   probs: bool = False,
                   out: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Evaluate the network at ``coords_norm (N,3)`` and time ``t_cycle``, in chunks.

    Returns ``labels (N,)`` uint8 (argmax), ``intensity (N,)`` float32 and, on request,
    ``displacement (N,3)`` (normalised units) and ``probs (N,C)``. Output buffers are
    allocated once (or taken from ``out``, reused across calls); each chunk is written
    into them.
    """
    dev = coords_norm.device
    n = coords_norm.shape[0]
    out = {} if out is None else out
    labels = out.get("labels")
    labels = torch.empty(n, dtype=torch.uint8, device=dev) if labels is None else labels
    inten = out.get("intensity")
    inten = torch.empty(n, dtype=torch.float32, device=dev) if inten is None else inten
    disp = out.get("displacement")
    if with_motion and disp is None:
        disp = torch.empty((n, 3), dtype=torch.float32, device=dev)
    prob = out.get("probs")
    t_buf = torch.full((min(chunk, n), 1), float(t_cycle), device=dev)
    for i in range(0, n, chunk):
        check_cancelled()
        c = coords_norm[i:i + chunk]
        res = net(c, t_buf[: c.shape[0]], code, with_motion=with_motion)
        labels[i:i + c.shape[0]] = res.seg_logits.argmax(-1).to(torch.uint8)
        inten[i:i + c.shape[0]] = res.intensity.float()
        if with_motion:
            disp[i:i + c.shape[0]] = res.displacement.float()
        if probs:
            if prob is None:
                prob = torch.empty((n, res.seg_logits.shape[1]), dtype=torch.float32,
                                   device=dev)
            prob[i:i + c.shape[0]] = res.seg_logits.float().softmax(-1)
    result = {"labels": labels, "intensity": inten}
    if with_motion:
        result["displacement"] = disp
    if probs:
        result["probs"] = prob
    return result


def grid_coords_norm(shape: tuple[int, int, int], affine_ras: np.ndarray,
                     heart: HeartFrame, slice_shift: np.ndarray | None = None,
                     factor: int = 1) -> np.ndarray:
    """``(X*Y*Z, 3)`` float32 normalised heart coordinates of every voxel of a grid (C order).

    ``slice_shift (Z0, 2)``: in-plane shifts of the ``Z0`` native slices in voxels
    (:func:`refine.slice_shifts`); voxel ``(i, j, k)`` is then sampled at ``(i - dx, j - dy,
    k)``, the shifts interpolated along z onto a grid of z factor ``factor``."""
    ijk = grid_ijk(shape).astype(np.float64)
    if slice_shift is not None:
        shift = interpolate_slices(np.asarray(slice_shift, np.float64).T, factor).T  # (Z, 2)
        if len(shift) != shape[2]:
            raise ValueError(f"{len(slice_shift)} slice shifts for a grid of {shape[2]} "
                             f"slices at z factor {factor}")
        ijk[:, :2] -= shift[ijk[:, 2].astype(int)]
    return heart.ras_to_norm(apply_affine(affine_ras, ijk)).astype(np.float32)


def slice_shift_ras(points_ras: np.ndarray, affine_ras: np.ndarray,
                    slice_shift: np.ndarray | None) -> np.ndarray:
    """``(N, 3)`` RAS mm offsets of points on the native crop grid ``affine_ras`` by their
    slice's in-plane shift (:func:`grid_coords_norm`): the network describes a point at
    ``point - offset``. Zeros without shifts."""
    points_ras = np.asarray(points_ras, np.float64)
    if slice_shift is None:
        return np.zeros_like(points_ras)
    shift = np.asarray(slice_shift, np.float64)
    k = np.clip(np.rint(ras_to_voxel(affine_ras, points_ras)[:, 2]), 0, len(shift) - 1)
    return shift[k.astype(int)] @ np.asarray(affine_ras)[:3, :2].T


def pose_fn(pose_matrix: torch.Tensor | None):
    """The coordinate map of a fitted pose (4x4, normalised subject -> prior), or None."""
    if pose_matrix is None:
        return None
    m = pose_matrix.float()
    return lambda x: x @ m[:3, :3].T.to(x.device) + m[:3, 3].to(x.device)


def crop_grid(sd: SubjectData, factor: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """``(affine_ras, shape)`` of the subject's crop grid at z factor ``factor``."""
    return resample_grid_z(sd.crop_affine_ras, sd.grid_shape, factor)


@dataclass(frozen=True)
class SampledFrame:
    """One frame of sampled fields on a crop grid ``(x, y, z*F)``.

    ``labels`` uint8, ``intensity`` float32 in the input's units, ``probs (C, x, y, z*F)``
    float32 or None. The arrays are buffers reused for the next frame: copy what you keep.
    """

    index: int
    t_cycle: float
    labels: np.ndarray
    intensity: np.ndarray
    probs: np.ndarray | None


@torch.inference_mode()
def iter_frames(net, code: torch.Tensor, sd: SubjectData, factor: int, device="cpu",
                pose_matrix: torch.Tensor | None = None, reporter=None,
                stage: str = "sample", probs: bool = False,
                chunk: int = DEFAULT_CHUNK,
                frames: Sequence[int] | None = None,
                slice_shift: np.ndarray | None = None) -> Iterator[SampledFrame]:
    """Sample the subject's frames one at a time on its crop grid at z factor ``factor``
    (all of them in order, or the indices in ``frames``), each native slice shifted in-plane
    by ``slice_shift`` (:func:`grid_coords_norm`) when given.

    Memory: the grid's coordinates, one frame of outputs (reused) and ``chunk`` points of
    network activations, whatever the number of frames.
    """
    aff, shape = crop_grid(sd, factor)
    coords = torch.from_numpy(grid_coords_norm(shape, aff, sd.heart, slice_shift, factor))
    coords = coords.to(device)
    fn = pose_fn(pose_matrix)
    if fn is not None:
        coords = fn(coords)
    code = code.to(device)
    n = coords.shape[0]
    dev = coords.device
    buf = {"labels": torch.empty(n, dtype=torch.uint8, device=dev),
           "intensity": torch.empty(n, dtype=torch.float32, device=dev)}
    if probs:
        buf["probs"] = torch.empty((n, net.cfg.n_classes), dtype=torch.float32, device=dev)
    host = {k: v if v.device.type == "cpu" else torch.empty_like(v, device="cpu")
            for k, v in buf.items()}
    inten = np.empty(shape, np.float32)
    lo, hi = sd.intensity_range
    n_t = sd.n_frames
    order = range(n_t) if frames is None else [int(f) for f in frames]
    for i, f in enumerate(order):
        if reporter is not None:
            reporter.update(stage, i / len(order), f"frame {f + 1}/{n_t}")
        t = sd.frame_times[f]
        predict_points(net, code, coords, float(t), chunk=chunk, probs=probs, out=buf)
        for k, v in host.items():
            if v is not buf[k]:
                v.copy_(buf[k])
        # one rounding to float32 at the end, as for a float64 range
        np.add(host["intensity"].numpy().reshape(shape) * (hi - lo), lo, out=inten,
               casting="same_kind")
        yield SampledFrame(
            f, float(t), host["labels"].numpy().reshape(shape), inten,
            np.moveaxis(host["probs"].numpy().reshape(*shape, -1), -1, 0) if probs else None)


def sample_fields(net, code: torch.Tensor, sd: SubjectData, factor: int, device="cpu",
                  pose_matrix: torch.Tensor | None = None, reporter=None,
                  stage: str = "sample", probs: bool = False, chunk: int = DEFAULT_CHUNK):
    """Labels, intensities (the input's units) and optionally class probabilities on the
    subject's crop grid at z factor ``factor``, at its frame times, all frames in memory.

    Returns ``(labels (T, x, y, z*F) uint8, intensity (T, x, y, z*F) float32,
    probs (T, C, x, y, z*F) or None, affine_ras of that grid)``.
    """
    aff, shape = crop_grid(sd, factor)
    n_t = sd.n_frames
    labels = np.empty((n_t, *shape), np.uint8)
    inten = np.empty((n_t, *shape), np.float32)
    prob = np.empty((n_t, net.cfg.n_classes, *shape), np.float32) if probs else None
    for fr in iter_frames(net, code, sd, factor, device, pose_matrix, reporter, stage,
                          probs, chunk):
        labels[fr.index] = fr.labels
        inten[fr.index] = fr.intensity
        if probs:
            prob[fr.index] = fr.probs
    return labels, inten, prob, aff


def _embed(crop: np.ndarray, sd: SubjectData, factor: int, fill) -> np.ndarray:
    """Crop-grid array ``(..., x, y, z*F)`` -> ``(..., X, Y, Z*F)`` on the whole source grid."""
    src = sd.source_shape if any(sd.source_shape) else sd.grid_shape
    full = np.full((*crop.shape[:-3], src[0], src[1], src[2] * factor), fill, crop.dtype)
    ox, oy, oz = sd.crop_offset
    full[..., ox:ox + crop.shape[-3], oy:oy + crop.shape[-2],
         oz * factor:oz * factor + crop.shape[-1]] = crop
    return full


def embed_in_source(crop: np.ndarray, sd: SubjectData, factor: int, fill=0) -> np.ndarray:
    """(T, x, y, z*F) crop-grid arrays -> (X, Y, Z*F, T) on the subject's whole source grid at
    z factor ``factor`` (NIfTI axis order), ``fill`` outside the crop."""
    return np.moveaxis(_embed(crop, sd, factor, fill), 0, -1)


def embed_frame(crop: np.ndarray, sd: SubjectData, factor: int, fill=0) -> np.ndarray:
    """One (x, y, z*F) crop-grid frame -> (X, Y, Z*F) on the whole source grid."""
    return _embed(crop, sd, factor, fill)
