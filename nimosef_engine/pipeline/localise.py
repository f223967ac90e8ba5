"""Find the heart and its axes in an unlabelled short-axis cine (no model, no labels).

Method (numpy + scipy only; 1.1-1.3 s for a 256x256x12x20 cine on 2 busy cores):

1. Intensities are scaled by robust percentiles (1st, 99.5th). Two temporal maps: the
   maximum over frames (each blood pool at its largest) and the standard deviation over
   frames (motion, clipped at its 97th percentile so flow artefacts cannot dominate). Both
   are resampled in-plane to a 2 mm grid so that filter sizes are in mm.
2. LV detector. In an SSFP cine the LV blood pool is a bright disk surrounded on nearly all
   sides by dark myocardium; the RV is a crescent with a thin wall, vessels are small and
   move little. For disk radii of 10-32 mm (FFT convolutions) the disk mean is compared
   with each of 8 sectors of the 8 mm ring around it, against the 3rd-brightest sector
   ("dark nearly all around": tolerates the RV, the outflow tract or fat on 2 sectors).
   This contrast is multiplied by the motion within the ring, by the squared motion within
   48 mm (the heart is the largest moving region, which beat vessels and fat in the
   measurements) and by a broad centre-of-image prior. The score maps are summed over
   slices (the LV is present and moving in most of them) to give the LV axis; each slice
   then takes its own peak near its neighbour's, and the run of slices with at least 20 %
   of the best slice's score is kept (the base and apex ends drop out).
3. Per slice, all frames at once, the LV blood pool is segmented at native resolution:
   threshold half way between the disk's blood and the ring's myocardium intensity,
   opening, the component covering the centre, holes (papillary muscles) filled.
   ED = the frame of largest total LV area, ES = the smallest; the LV centre is the
   area-weighted centroid of the ED pool (the label-based frame uses the same definition).
4. RV direction, on the slices holding the middle 70 % of the LV volume (basal slices carry
   the atria and great vessels): candidates are the blood-bright components at ED outside
   the LV pool within 30 mm of it. The RV is the one that empties most from ED to ES
   (fat and vessels stay bright), weighted by closeness to the LV; per-slice unit
   directions are summed with these weights.
5. Long-axis sign: the LV pool is larger towards the base and vanishes at the apex, so the
   area-weighted slice position lies basal of the middle of the detected slice range (the
   rule :func:`geometry.heart_frame_from_labels` applies to labels).

Hints (scanner RAS mm) override the LV centre and/or the RV direction. ``confidence`` is a
geometric mean of ring contrast, peak distinctness, contraction, pool size and slice count
(about 0.8-1 on ACDC, < 0.2 on noise or a static cine). Measured on all 100 ACDC patients by
``benchmarks/localise_acdc.py``: see its output for the figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import (
    HeartFrame,
    orthonormal_frame,
    ras_to_voxel,
    spacing_of,
    stack_normal,
    voxel_to_ras,
)

log = logging.getLogger(__name__)

WORK_MM = 2.0  # in-plane working grid spacing of the detector
RADII_MM = (10.0, 14.0, 19.0, 25.0, 32.0)  # LV blood pool disk radii tried
RING_MM = 8.0  # ring (myocardium) width
HEART_MM = 48.0  # radius of the neighbourhood whose motion marks the heart
STD_CLIP_PCT = 97.0  # temporal std clipped here: flow artefacts must not outweigh the heart
N_SECTORS = 8
SECTOR_RANK = 3  # contrast against the SECTOR_RANK-th brightest ring sector
HEART_EXP = 2.0
TRACK_MM = 24.0  # max in-plane drift of the LV centre from the axis seed
RV_MAX_GAP_MM = 30.0  # RV pool within this distance of the LV pool
RV_BRIGHT = 0.6  # blood-bright: above this fraction of the LV pool's median intensity
RV_AREA_W = 0.25  # weight of the ED area next to the emptied area
RV_GAP_SCALE_MM = 15.0
MID_FRACTION = 0.7  # RV direction from the slices holding the middle 70 % of the LV volume


@dataclass
class HeartPose:
    """Heart pose estimated from a cine.

    ``frame``: heart frame (origin = LV blood pool centre, RAS mm; rotation columns x = LV->RV
    in the slice plane, z = stack normal apex -> base, y = z x x). ``roi_center_ras``: (3,)
    RAS mm, centre of the LV + RV blood pools (the heart ROI). ``confidence`` in [0, 1].
    ``ed_index``: 0-based frame with the largest LV blood pool, ``es_index`` the smallest.
    ``lv_radius_mm``: equivalent
    radius of the ED LV pool on its largest slice. ``lv_slices``: slice indices holding LV.
    """

    frame: HeartFrame
    roi_center_ras: np.ndarray
    confidence: float
    ed_index: int
    notes: list[str] = field(default_factory=list)
    lv_radius_mm: float = 0.0
    lv_slices: list[int] = field(default_factory=list)
    es_index: int = -1


def _validate(frames, affine_ras, source) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Checked ``(T, X, Y, Z)`` float32 frames, ``(4, 4)`` float64 affine, and the robust
    intensity offset and scale (1st and 99.5th percentiles) that map the cine to about [0, 1].
    """
    try:
        arr = np.asarray(frames, dtype=np.float32)
        aff = np.asarray(affine_ras, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NimosefInputError(source, f"frames/affine are not numeric arrays ({exc})") from None
    if arr.ndim != 4:
        raise NimosefInputError(source, f"expected frames of shape (T, X, Y, Z), got "
                                        f"{arr.ndim}D {tuple(arr.shape)}")
    if arr.shape[0] < 2:
        raise NimosefInputError(source, f"need a cine of at least 2 frames to localise the "
                                        f"heart, got {arr.shape[0]}")
    if min(arr.shape[1:3]) < 16:
        raise NimosefInputError(source, f"slices of {arr.shape[1]}x{arr.shape[2]} voxels are "
                                        f"too small for a short-axis cine")
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff)) < 1e-9:
        raise NimosefInputError(source, "affine_ras must be a finite, invertible 4x4 matrix")
    if not np.all(np.isfinite(arr)):
        raise NimosefInputError(source, "cine contains NaN or infinite values")
    lo, hi = np.percentile(arr[:, ::2, ::2], [1.0, 99.5])
    if not hi > lo:
        lo, hi = float(arr.min()), float(arr.max())
        if not hi > lo:
            raise NimosefInputError(source, "cine is constant (no image contrast)")
    return arr, aff, float(lo), float(hi - lo)


def _disk(radius_px: float) -> np.ndarray:
    r = int(np.ceil(radius_px))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx ** 2 + yy ** 2) <= radius_px ** 2 + 1e-6


class _Conv:
    """Same-size 2D convolution of a ``(X, Y, Z)`` stack with many kernels via one FFT."""

    def __init__(self, stack: np.ndarray, pad: int):
        self.shape = stack.shape[:2]
        self.pad = pad
        self.full = (stack.shape[0] + 2 * pad, stack.shape[1] + 2 * pad)
        padded = np.pad(stack.astype(np.float32, copy=False),
                        ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        self.spec = sfft.rfft2(padded, axes=(0, 1), workers=2)

    def mean_over(self, kernel: np.ndarray) -> np.ndarray:
        """Mean of the stack over ``kernel`` (boolean, odd size) centred at each pixel."""
        k = kernel.astype(np.float32) / max(kernel.sum(), 1)
        h = np.zeros(self.full, np.float32)
        c = kernel.shape[0] // 2
        h[:kernel.shape[0], :kernel.shape[1]] = k
        h = np.roll(h, (-c, -c), axis=(0, 1))
        kspec = sfft.rfft2(h, workers=2)
        out = sfft.irfft2(self.spec * kspec[:, :, None], s=self.full, axes=(0, 1), workers=2)
        p = self.pad
        return out[p:p + self.shape[0], p:p + self.shape[1]].astype(np.float32)


@dataclass
class _Detection:
    centers_w: np.ndarray  # (Z, 2) working-grid LV centre per slice
    radius_mm: np.ndarray  # (Z,) best disk radius
    contrast: np.ndarray  # (Z,) ring contrast at the centre
    valid: np.ndarray  # (Z,) bool, slice holds LV
    peak_ratio: float  # axis score peak / best score away from it


def _detect_lv(maxmap: np.ndarray, stdmap: np.ndarray, h: np.ndarray,
               seed: np.ndarray | None = None) -> _Detection:
    """LV centre per slice on the working grid (``maxmap``, ``stdmap``: (Xw, Yw, Z)).

    ``seed``: optional (2,) working-grid position of the LV axis (from a hint).
    """
    xw, yw, nz = maxmap.shape
    hm = float(np.mean(h))
    rmax = int(np.ceil(max(max(RADII_MM) + RING_MM, HEART_MM) / hm)) + 1
    conv_i = _Conv(ndimage.gaussian_filter(maxmap, (1, 1, 0)), rmax)
    conv_s = _Conv(np.minimum(stdmap, np.percentile(stdmap, STD_CLIP_PCT)), rmax)
    s_ref = float(np.percentile(stdmap, STD_CLIP_PCT)) + 1e-6
    best = np.full(maxmap.shape, -np.inf, dtype=np.float32)
    best_r = np.zeros(maxmap.shape, dtype=np.float32)
    best_c = np.zeros(maxmap.shape, dtype=np.float32)
    grid = np.mgrid[-rmax:rmax + 1, -rmax:rmax + 1] * np.asarray(h)[:, None, None]
    dist = np.hypot(grid[0], grid[1])  # kernel offsets in mm
    ang = np.arctan2(grid[1], grid[0])
    sector = ((ang + np.pi) / (2 * np.pi) * N_SECTORS).astype(int) % N_SECTORS
    heart_motion = conv_s.mean_over(dist <= HEART_MM) / s_ref
    for r in RADII_MM:
        disk = dist <= r
        inner = conv_i.mean_over(disk)
        ring = (dist > r) & (dist <= r + RING_MM)
        sect = np.stack([conv_i.mean_over(ring & (sector == s)) for s in range(N_SECTORS)])
        sect.sort(axis=0)
        contrast = inner - sect[-SECTOR_RANK]  # dark in nearly all sectors
        motion = conv_s.mean_over(dist <= r + RING_MM) / s_ref
        score = (np.clip(contrast, 0, None) * np.sqrt(np.clip(motion, 0, None))
                 * np.clip(heart_motion, 0, None) ** HEART_EXP)
        upd = score > best
        best[upd] = score[upd]
        best_r[upd] = r
        best_c[upd] = contrast[upd]
    # broad centre prior (the heart is rarely at the edge of the field of view)
    fov = np.array([xw * h[0], yw * h[1]])
    gi = (np.arange(xw) - (xw - 1) / 2) * h[0] / (0.35 * fov[0])
    gj = (np.arange(yw) - (yw - 1) / 2) * h[1] / (0.35 * fov[1])
    prior = np.exp(-0.5 * (gi[:, None] ** 2 + gj[None, :] ** 2)).astype(np.float32)
    best = np.clip(best, 0, None) * prior[:, :, None]
    axis_map = ndimage.gaussian_filter(best, (3 / h[0], 3 / h[1], 0)).sum(-1)
    if seed is None:
        seed = np.array(np.unravel_index(int(np.argmax(axis_map)), axis_map.shape), float)
    # distinctness: axis peak vs the best peak further than 40 mm away
    di = (np.arange(xw)[:, None] - seed[0]) * h[0]
    dj = (np.arange(yw)[None, :] - seed[1]) * h[1]
    far = np.hypot(di, dj) > 40.0
    second = float(axis_map[far].max()) if far.any() else 0.0
    peak_ratio = float(axis_map.max() / (second + 1e-9))
    # per-slice peaks near the seed, tracked from the strongest slice outwards
    near = np.hypot(di, dj) <= TRACK_MM
    slice_peak = np.array([best[:, :, k][near].max() for k in range(nz)])
    k0 = int(np.argmax(slice_peak))
    centers = np.zeros((nz, 2))
    order = [k0] + list(range(k0 + 1, nz)) + list(range(k0 - 1, -1, -1))
    for k in order:
        ref = seed if k == k0 else centers[k - 1] if k > k0 else centers[k + 1]
        ref = 0.5 * (ref + seed)
        d = np.hypot((np.arange(xw)[:, None] - ref[0]) * h[0],
                     (np.arange(yw)[None, :] - ref[1]) * h[1])
        sc = np.where(d <= TRACK_MM * 0.75, best[:, :, k], -1.0)
        centers[k] = np.unravel_index(int(np.argmax(sc)), sc.shape)
    ci = np.clip(np.round(centers).astype(int), 0, [xw - 1, yw - 1])
    radius = best_r[ci[:, 0], ci[:, 1], np.arange(nz)]
    contrast = best_c[ci[:, 0], ci[:, 1], np.arange(nz)]
    sp = best[ci[:, 0], ci[:, 1], np.arange(nz)]
    ok = sp > 0.2 * sp[k0]
    valid = np.zeros(nz, bool)
    valid[k0] = True
    for step in (1, -1):
        k = k0 + step
        while 0 <= k < nz and ok[k]:
            valid[k] = True
            k += step
    return _Detection(centers, radius, contrast, valid, peak_ratio)


def _window(center: np.ndarray, half_mm: float, spacing: np.ndarray,
            shape: tuple[int, int]) -> tuple[slice, slice]:
    """In-plane index window of ``half_mm`` around ``center`` (native voxels), clipped."""
    half = np.ceil(half_mm / spacing).astype(int)
    c = np.round(center).astype(int)
    return (slice(max(c[0] - half[0], 0), min(c[0] + half[0] + 1, shape[0])),
            slice(max(c[1] - half[1], 0), min(c[1] + half[1] + 1, shape[1])))


def _segment_pool(stack: np.ndarray, center: np.ndarray, radius_mm: float,
                  spacing: np.ndarray) -> np.ndarray:
    """Bright pool at ``center`` (voxels) in one slice of every frame; ``(T, X, Y)`` bool.

    ``stack``: (T, X, Y) one slice over time (native grid). Per frame: threshold half way
    between the blood (90th percentile of the central disk) and the myocardium (30th
    percentile of the ring at ``radius_mm``), opening, the component covering the centre,
    holes filled. Computed in a window around the centre, all frames at once.
    """
    out = np.zeros(stack.shape, bool)
    r = float(radius_mm)
    win = _window(center, 1.5 * r + RING_MM + 8.0, spacing, stack.shape[1:])
    sub = stack[:, win[0], win[1]]
    c = np.asarray(center, float) - [win[0].start, win[1].start]
    di = (np.arange(sub.shape[1])[:, None] - c[0]) * spacing[0]
    dj = (np.arange(sub.shape[2])[None, :] - c[1]) * spacing[1]
    dist = np.hypot(di, dj)
    core = dist <= max(0.6 * r, 1.5 * float(np.max(spacing)))
    ring = (dist > r) & (dist <= r + RING_MM)
    if not core.any() or not ring.any():
        return out
    blood = np.percentile(sub[:, core], 90, axis=1)
    myo = np.percentile(sub[:, ring], 30, axis=1)
    thr = np.where(blood > myo, 0.5 * (blood + myo), np.inf)
    sm = ndimage.gaussian_filter(sub, (0, *(1.0 / spacing)))
    mask = (sm > thr[:, None, None]) & (dist <= 1.5 * r + 5.0)[None]
    op = max(1, int(round(2.0 / float(np.min(spacing)))))
    mask = ndimage.binary_opening(mask, structure=_disk(op)[None])
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    lab, n = ndimage.label(mask, structure=plane)
    if n == 0:
        return out
    overlap = ndimage.sum_labels(np.broadcast_to(core, lab.shape), lab, np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = overlap > 0
    # one component per frame: the one covering most of the core
    frame_of = ndimage.minimum(np.broadcast_to(np.arange(len(sub))[:, None, None], lab.shape),
                               lab, np.arange(1, n + 1)).astype(int)
    best = {}
    for i, (f, ov) in enumerate(zip(frame_of, overlap, strict=True)):
        if ov > 0 and ov > best.get(f, (0, -1.0))[1]:
            best[f] = (i + 1, ov)
    keep[:] = False
    for lab_id, _ in best.values():
        keep[lab_id] = True
    out[:, win[0], win[1]] = ndimage.binary_fill_holes(keep[lab], structure=plane)
    return out


def localise_heart(frames: np.ndarray, affine_ras: np.ndarray, *,
                   lv_center_ras: np.ndarray | None = None,
                   rv_point_ras: np.ndarray | None = None,
                   scale_mm: float = 100.0,
                   source: str | Path | None = None) -> HeartPose:
    """Heart pose of a short-axis cine ``frames`` (T, X, Y, Z) with ``affine_ras`` (4, 4).

    ``lv_center_ras`` / ``rv_point_ras`` (RAS mm) override the detected LV centre / the
    LV->RV direction. ``source`` names the input in error messages. Raises
    :class:`NimosefInputError` for fewer than 2 frames, NaN/inf, a constant image or a bad
    affine.
    """
    arr, aff, lo, scale = _validate(frames, affine_ras, source)
    notes: list[str] = []
    t_n, nx, ny, nz = arr.shape
    spacing = spacing_of(aff)[:2]

    def norm(t: int, k: int) -> np.ndarray:
        return (arr[t, :, :, k] - lo) / scale

    # temporal maps, resampled to the working grid
    maxmap = np.clip((arr.max(0) - lo) / scale, 0.0, 1.5)
    stdmap = arr.std(0) / scale
    xw = max(16, int(round((nx - 1) * spacing[0] / WORK_MM)) + 1)
    yw = max(16, int(round((ny - 1) * spacing[1] / WORK_MM)) + 1)
    fac = ((xw - 1) / (nx - 1), (yw - 1) / (ny - 1), 1.0)
    h = np.array([spacing[0] / fac[0], spacing[1] / fac[1]])
    seed = None
    if lv_center_ras is not None:
        lv_center_ras = np.asarray(lv_center_ras, dtype=np.float64).reshape(3)
        ijk = ras_to_voxel(aff, lv_center_ras[None])[0]
        if not np.all((ijk > -0.5) & (ijk < np.array([nx, ny, nz]) - 0.5)):
            raise NimosefInputError("lv_center_ras", f"LV centre hint "
                                    f"{np.round(lv_center_ras, 1).tolist()} mm lies outside "
                                    f"the image (voxel {np.round(ijk, 1).tolist()})")
        seed = ijk[:2] * np.array(fac[:2])
    det = _detect_lv(ndimage.zoom(maxmap, fac, order=1), ndimage.zoom(stdmap, fac, order=1), h,
                     seed)
    if float(stdmap.max()) < 1e-3:
        notes.append("frames are identical: no motion cue, brightness only")
    slices = np.flatnonzero(det.valid)
    centers_nat = det.centers_w / np.array(fac[:2])
    # LV pools per frame and slice (native grid)
    areas = np.zeros((t_n, nz))
    masks: dict[tuple[int, int], np.ndarray] = {}
    for k in slices:
        stack = (arr[:, :, :, k] - lo) / scale
        m = _segment_pool(stack, centers_nat[k], det.radius_mm[k], spacing)
        areas[:, k] = m.sum((1, 2)) * spacing[0] * spacing[1]
        for t in range(t_n):
            masks[t, k] = m[t]
    ed = int(np.argmax(areas.sum(1)))
    a_ed = areas[ed]
    if a_ed.sum() <= 0:
        notes.append("LV blood pool not segmented; centre from the detector")
        ijk = np.array([[*centers_nat[k], k] for k in slices]).mean(0)
        lv_center = voxel_to_ras(aff, ijk[None])[0]
        lv_ijk_by_slice = {int(k): centers_nat[k] for k in slices}
    else:
        pts, wts = [], []
        lv_ijk_by_slice = {}
        for k in slices:
            if a_ed[k] > 0:
                c = np.argwhere(masks[ed, k]).mean(0)
                lv_ijk_by_slice[int(k)] = c
                pts.append([c[0], c[1], k])
                wts.append(a_ed[k])
        lv_center = voxel_to_ras(aff, np.average(np.array(pts), axis=0, weights=wts)[None])[0]
    # RV direction
    es = int(np.argmin(np.where(areas.sum(1) > 0, areas.sum(1), np.inf)))
    ks_lv = sorted(lv_ijk_by_slice)
    lo_k, hi_k = _middle(ks_lv, a_ed)
    mid_slices = {k: v for k, v in lv_ijk_by_slice.items() if lo_k <= k <= hi_k}
    rv_vec, rv_pts, rv_w = _rv_direction(norm, masks, ed, es, mid_slices,
                                         spacing, aff)
    normal = stack_normal(aff)
    # long-axis sign
    a_sign = a_ed
    ks = np.flatnonzero(a_sign > 0)
    sign_margin = 0.0
    if len(ks) >= 2:
        c = float(np.sum(a_sign * np.arange(nz)) / a_sign.sum())
        mid = 0.5 * (ks.min() + ks.max())
        sign_margin = (c - mid) / max(ks.max() - ks.min(), 1)
        if c < mid:
            normal = -normal
    else:
        notes.append("LV found on fewer than 2 slices: long-axis sign unknown")
    if lv_center_ras is not None:
        lv_center = lv_center_ras
        notes.append("LV centre from hint")
    if rv_point_ras is not None:
        x_axis = np.asarray(rv_point_ras, dtype=np.float64).reshape(3) - lv_center
        notes.append("RV direction from hint")
    elif np.linalg.norm(rv_vec) > 0:
        x_axis = rv_vec
    else:
        notes.append("RV not found: x axis along the first in-plane voxel axis")
        x_axis = aff[:3, 0].copy()
    x_axis = x_axis - normal * (x_axis @ normal)
    if np.linalg.norm(x_axis) < 1e-6:
        notes.append("RV hint lies on the long axis: x axis along the first voxel axis")
        x_axis = aff[:3, 0].copy()
    rotation = orthonormal_frame(x_axis, normal)
    if rv_pts:
        roi = np.average(np.vstack([lv_center[None], np.array(rv_pts)]), axis=0,
                         weights=[a_ed.sum()] + rv_w)
    else:
        roi = lv_center.copy()
    conf = _confidence(det, slices, areas, ed, bool(np.linalg.norm(rv_vec) > 0), sign_margin)
    lv_r = float(np.sqrt(a_ed.max() / np.pi)) if a_ed.max() > 0 else 0.0
    log.debug("localise: LV %s mm, slices %s, ED %d, confidence %.2f, notes %s",
              np.round(lv_center, 1).tolist(), slices.tolist(), ed, conf, notes)
    return HeartPose(HeartFrame(lv_center, rotation, scale_mm), roi, conf, ed, notes,
                     lv_r, [int(k) for k in slices], es)


def _middle(ks: list[int], area: np.ndarray) -> tuple[int, int]:
    """Slice range holding the middle ``MID_FRACTION`` of the LV pool volume."""
    if not ks:
        return 0, -1
    a = np.asarray([area[k] for k in ks], dtype=np.float64)
    if a.sum() <= 0:
        return ks[0], ks[-1]
    cum = np.cumsum(a) / a.sum()
    q = (1 - MID_FRACTION) / 2
    lo = ks[int(np.searchsorted(cum, q))]
    hi = ks[min(int(np.searchsorted(cum, 1 - q)), len(ks) - 1)]
    return lo, hi


def _rv_direction(norm, masks: dict, ed: int, es: int, lv_ijk: dict,
                  spacing: np.ndarray, aff: np.ndarray):
    """LV->RV direction (RAS, unnormalised), RV centroids (RAS mm) and their areas (mm2).

    In each LV slice, candidates are the blood-bright components at ED outside the LV pool
    (gap 2-30 mm). The RV is the one that empties most: ED-bright pixels that are no longer
    bright at ES (``es``), weighted by closeness to the LV; fat and vessels stay bright.
    """
    vec = np.zeros(3)
    pts, wts = [], []
    sig = 1.0 / spacing
    op = max(1, int(round(1.5 / float(np.min(spacing)))))
    px_mm2 = float(spacing[0] * spacing[1])
    for k, c in lv_ijk.items():
        m = masks.get((ed, k))
        if m is None or not m.any():
            continue
        win = _window(c, RV_MAX_GAP_MM + 120.0, spacing, m.shape)
        off = np.array([win[0].start, win[1].start])
        m = m[win]
        img_ed = ndimage.gaussian_filter(norm(ed, k)[win], sig)
        img_es = ndimage.gaussian_filter(norm(es, k)[win], sig)
        blood = float(np.median(img_ed[m]))
        dist_lv = ndimage.distance_transform_edt(~m, sampling=spacing)
        bright = ((img_ed > RV_BRIGHT * blood) & (img_ed < 1.6 * blood) & (dist_lv > 2.0)
                  & (dist_lv <= RV_MAX_GAP_MM + 50.0))
        bright = ndimage.binary_opening(bright, structure=_disk(op))
        lab, n = ndimage.label(bright)
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        area = ndimage.sum_labels(np.ones_like(img_ed), lab, idx) * px_mm2
        emptied = ndimage.sum_labels(img_es < RV_BRIGHT * blood, lab, idx) * px_mm2
        gap = ndimage.minimum(dist_lv, lab, idx)
        score = (emptied + RV_AREA_W * area) * np.exp(-gap / RV_GAP_SCALE_MM)
        score *= (gap <= RV_MAX_GAP_MM) & (area >= 40.0)
        j = int(np.argmax(score))
        if score[j] <= 0:
            continue
        cc = np.argwhere(lab == j + 1).mean(0) + off
        p_rv = voxel_to_ras(aff, np.array([[cc[0], cc[1], k]]))[0]
        p_lv = voxel_to_ras(aff, np.array([[c[0], c[1], k]]))[0]
        d = p_rv - p_lv
        vec += d / (np.linalg.norm(d) + 1e-9) * score[j]
        pts.append(p_rv)
        wts.append(float(area[j]))
    return vec, pts, wts


def _confidence(det: _Detection, slices: np.ndarray, areas: np.ndarray, ed: int,
                rv_found: bool, sign_margin: float) -> float:
    """Heuristic confidence in [0, 1].

    Geometric mean of: ring contrast of the LV disk (about 0.1-0.4 on real cines), peak
    distinctness, contraction of the segmented pool (ED vs smallest frame), a plausible
    pool size and slice count; scaled down when no RV was found or the long-axis sign is
    marginal.
    """
    if len(slices) == 0:
        return 0.0
    c_contrast = float(np.clip(np.median(det.contrast[slices]) / 0.15, 0, 1))
    c_peak = float(np.clip(det.peak_ratio - 1.0, 0, 1))
    total = areas.sum(1)
    c_motion = float(np.clip((total[ed] - total.min()) / max(total[ed], 1e-9) / 0.1, 0, 1))
    r_eq = np.sqrt(areas[ed].max() / np.pi)
    c_size = 1.0 if 8.0 <= r_eq <= 45.0 else 0.2
    c_slices = float(np.clip(len(slices) / 4.0, 0.2, 1))
    base = (max(c_contrast, 1e-3) * max(c_peak, 1e-3) * max(c_motion, 1e-3) * c_size
            * c_slices) ** 0.2
    scale = (1.0 if rv_found else 0.7) * (0.8 + 0.2 * float(np.clip(abs(sign_margin) / 0.1,
                                                                      0, 1)))
    return float(np.clip(base * scale, 0, 1))
