"""Myocardial strain from the dense motion: Lagrangian Green strain relative to end-diastole in
the heart's own directions, per AHA segment (Cerqueira et al., Circulation 2002) and globally.

``F = I + grad u`` (``u`` the ED -> frame displacement in mm, gradient in mm/mm),
``E = (F^T F - I) / 2``, projected on unit directions at ED: radial (from the LV long axis
outwards, in the short-axis plane), circumferential (perpendicular to it in the plane),
longitudinal (along the long axis, apex -> base). In percent, the median over a segment's
voxels. Longitudinal strain comes from the gradient across slices, 5 to 10 mm apart in a
short-axis cine: it is the coarsest of the three.

AHA segments of the ED myocardium: basal, mid and apical thirds of its extent along the long
axis (slices with myocardium but no LV blood pool are the apex cap, segment 17, left out);
rings of 6 x 60 degrees (basal 1-6, mid 7-12) and 4 x 90 degrees (apical 13-16) counted from
the RV insertion points: the septal segments (2, 3; 8, 9; 14) either side of the bisector of
the two insertion points, segment 1 anterior, then 2 anteroseptal, 3 inferoseptal, 4 inferior,
5 inferolateral, 6 anterolateral.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from nimosef_engine.core.geometry import LV, MYO, RV, HeartFrame, apply_affine, grid_ijk

ANTERIOR_SUPERIOR_RAS = np.array([0.0, 1.0, 1.0]) / np.sqrt(2.0)
STRAIN_COLUMNS = ["frame", "time", "segment", "radial_pct", "circumferential_pct",
                  "longitudinal_pct"]


@dataclass(frozen=True)
class MyocardialGeometry:
    """The ED myocardium of a crop grid and its local directions. ``index (N, 3)`` voxel
    indices, ``segment (N,)`` AHA segment 1-17, ``radial``, ``circumferential``,
    ``longitudinal`` ``(N, 3)`` RAS unit vectors; ``insertion_deg`` the anterior and
    inferior RV insertion angles and ``septum_deg`` their bisector (heart-frame angle about
    the long axis, 0 towards its x axis)."""

    index: np.ndarray
    segment: np.ndarray
    radial: np.ndarray
    circumferential: np.ndarray
    longitudinal: np.ndarray
    insertion_deg: tuple[float, float]
    septum_deg: float


def _wrap(deg):
    return (np.asarray(deg, np.float64) + 180.0) % 360.0 - 180.0


def rv_insertion_angles(labels: np.ndarray, angle_deg: np.ndarray,
                        heart: HeartFrame) -> tuple[float, float] | None:
    """Anterior and inferior RV insertion angles (degrees): the ends of the arc of myocardium
    that borders the RV blood pool (voxels of ``labels == MYO`` within one voxel in-plane of
    ``RV``), in slices that hold LV blood pool; ``angle_deg (x, y, z)`` each voxel's angle
    about the long axis. The anterior end is the more anterior-superior one (RAS). None when
    no myocardium borders the RV."""
    rv = ndimage.binary_dilation(labels == RV, structure=np.ones((3, 3, 1), bool))
    has_lv = (labels == LV).any(axis=(0, 1))
    border = (labels == MYO) & rv & has_lv[None, None, :]
    if border.sum() < 3:
        return None
    a = np.sort(_wrap(angle_deg[border]))
    gaps = np.diff(np.append(a, a[0] + 360.0))
    k = int(np.argmax(gaps))
    start, end = a[(k + 1) % len(a)], a[k]  # the arc runs from start to end (counter-clockwise)
    ends = []
    for deg in (start, end):
        th = np.radians(deg)
        ends.append((deg, heart.rotation @ np.array([np.cos(th), np.sin(th), 0.0])))
    ends.sort(key=lambda e: -float(e[1] @ ANTERIOR_SUPERIOR_RAS))
    return float(ends[0][0]), float(ends[1][0])


def myocardial_geometry(labels_ed: np.ndarray, affine_ras: np.ndarray,
                        heart: HeartFrame) -> MyocardialGeometry:
    """Directions and AHA segments of the ED myocardium (``labels_ed (x, y, z)`` on the grid
    ``affine_ras``) in ``heart``'s frame (z the long axis, apex -> base)."""
    labels_ed = np.asarray(labels_ed)
    ijk_all = grid_ijk(labels_ed.shape)
    hmm = heart.ras_to_heart_mm(apply_affine(affine_ras, ijk_all)).reshape(*labels_ed.shape, 3)
    # the LV axis of each slice: its blood pool's centre (the myocardium's where it has none)
    centre = np.zeros((labels_ed.shape[2], 2))
    for k in range(labels_ed.shape[2]):
        for lab in (LV, MYO):
            m = labels_ed[..., k] == lab
            if m.any():
                centre[k] = hmm[..., k, :2][m].mean(0)
                break
    rel = hmm[..., :2] - centre[None, None, :, :]
    angle = np.degrees(np.arctan2(rel[..., 1], rel[..., 0]))
    myo = labels_ed == MYO
    idx = np.argwhere(myo)
    ins = rv_insertion_angles(labels_ed, angle, heart)
    anterior, inferior = ins if ins is not None else (-60.0, 60.0)
    septum = float(_wrap(anterior + _wrap(inferior - anterior) / 2.0))
    sign = 1.0 if _wrap(inferior - septum) >= 0 else -1.0
    phi = _wrap(sign * (angle[myo] - septum))
    # levels: thirds of the myocardium's extent along the long axis (apex cap: 17)
    zl = hmm[..., 2][myo]
    lo, hi = float(zl.min()), float(zl.max())
    level = np.clip(((zl - lo) / max(hi - lo, 1e-6) * 3.0).astype(int), 0, 2)  # 0 apical
    ring6 = np.array([2, 3, 4, 5, 6, 1])[np.floor((phi + 60.0) / 60.0).astype(int) % 6]
    ring4 = np.array([14, 15, 16, 13])[np.floor((phi + 45.0) / 90.0).astype(int) % 4]
    segment = np.where(level == 2, ring6, np.where(level == 1, ring6 + 6, ring4))
    cap = ~(labels_ed == LV).any(axis=(0, 1))[idx[:, 2]]
    segment = np.where(cap, 17, segment)
    th = np.radians(angle[myo])
    radial = np.stack([np.cos(th), np.sin(th), np.zeros_like(th)], -1) @ heart.rotation.T
    longitudinal = np.broadcast_to(heart.rotation[:, 2], radial.shape).copy()
    circumferential = np.cross(longitudinal, radial)
    return MyocardialGeometry(idx, segment.astype(np.int8), radial, circumferential,
                              longitudinal, (float(anterior), float(inferior)), septum)


def deformation_gradient(u_vox: np.ndarray, affine_ras: np.ndarray,
                         index: np.ndarray) -> np.ndarray:
    """``F = I + grad u`` (RAS, mm/mm) at voxels ``index (N, 3)`` of a displacement field
    ``u_vox (x, y, z, 3)`` in voxel units (central differences) -> ``(N, 3, 3)``."""
    a = np.asarray(affine_ras)[:3, :3]
    g = np.stack([np.stack([np.gradient(u_vox[..., c], axis=ax) if u_vox.shape[ax] > 1
                            else np.zeros(u_vox.shape[:3], u_vox.dtype) for ax in range(3)], -1)
                  for c in range(3)], -2)  # (x, y, z, component, axis), voxel units
    g = g[tuple(index.T)].astype(np.float64)
    return np.eye(3) + a @ g @ np.linalg.inv(a)


def green_strain(f_grad: np.ndarray) -> np.ndarray:
    """Lagrangian Green strain ``E = (F^T F - I) / 2`` of ``(N, 3, 3)`` deformation gradients."""
    return 0.5 * (np.swapaxes(f_grad, -1, -2) @ f_grad - np.eye(3))


def strain_rows(u_vox: np.ndarray, affine_ras: np.ndarray, geo: MyocardialGeometry,
                frame: int, time: float) -> list[dict]:
    """Rows of ``strain.csv`` for one frame: radial, circumferential and longitudinal Green
    strain (%), the median over the voxels of each AHA segment 1-16 and of all of them
    (``global``). The median, not the mean: Green strain grows with the square of the
    gradient, and the few voxels where the field's gradient is steepest (the wall's edges,
    the slab's end slices) would otherwise outweigh the wall.
    ``u_vox (x, y, z, 3)``: the ED -> frame displacement (voxel units) on the ED grid."""
    e = green_strain(deformation_gradient(u_vox, affine_ras, geo.index))

    def along(d):
        return 100.0 * np.einsum("ni,nij,nj->n", d, e, d)

    comp = np.stack([along(geo.radial), along(geo.circumferential),
                     along(geo.longitudinal)], -1)
    rows = []
    keep = geo.segment <= 16
    for seg in [*range(1, 17), "global"]:
        m = keep if seg == "global" else geo.segment == seg
        vals = np.median(comp[m], axis=0) if m.any() else np.full(3, np.nan)
        rows.append({"frame": int(frame), "time": float(time), "segment": str(seg),
                     "radial_pct": float(vals[0]), "circumferential_pct": float(vals[1]),
                     "longitudinal_pct": float(vals[2])})
    return rows


def peak_strain(strain: pd.DataFrame, column: str = "circumferential_pct") -> pd.Series:
    """Peak of a strain column per segment over the frames: the value of largest magnitude
    (circumferential and longitudinal strain shorten, radial thickens). Index: segment."""
    def peak(x):
        x = x.dropna()
        return float(x.iloc[int(np.argmax(np.abs(x.to_numpy())))]) if len(x) else np.nan
    return strain.groupby("segment", sort=False)[column].agg(peak)
