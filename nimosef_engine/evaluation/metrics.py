"""Segmentation and cardiac-function metrics in world units (pure numpy / scipy).

Masks and label maps are ``(X, Y, Z)`` voxel arrays on a grid whose ``affine_ras`` (4x4, voxel
-> RAS mm, true spacing from :func:`nimosef_engine.core.geometry.nifti_affine_ras`) turns voxel
indices into millimetres. Labels follow NIMOSEF: 1 LV blood pool, 2 LV myocardium, 3 RV.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from nimosef_engine.core.geometry import LV, MYO, RV, voxel_to_ras
from nimosef_engine.core.threads import subnormals

CLASS_NAMES: dict[int, str] = {LV: "LV", MYO: "MYO", RV: "RV"}
MYOCARDIUM_DENSITY_G_PER_ML = 1.05
_SIX_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


def dice(pred: np.ndarray, gt: np.ndarray, label: int) -> float:
    """Dice ``2|P & G| / (|P| + |G|)`` of one label in two label maps of the same shape.

    NaN when the label is absent from both.
    """
    p = np.asarray(pred) == label
    g = np.asarray(gt) == label
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(p, g).sum()) / total


def dice_per_class(pred: np.ndarray, gt: np.ndarray,
                   labels: Sequence[int] = (LV, MYO, RV)) -> dict[int, float]:
    """``{label: dice}`` for each label (NaN where absent from both maps)."""
    return {int(lab): dice(pred, gt, lab) for lab in labels}


def boundary_points_mm(mask: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """RAS mm ``(N, 3)`` centres of mask voxels with at least one 6-neighbour outside the mask.

    Voxels on the edge of the grid count as boundary (outside the grid is outside the mask).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    interior = ndimage.binary_erosion(mask, structure=_SIX_NEIGHBOURS, border_value=0)
    ijk = np.argwhere(mask & ~interior)
    return voxel_to_ras(affine_ras, ijk)


def point_set_distances(points_a: np.ndarray, points_b: np.ndarray) -> dict[str, float]:
    """Symmetric distances between two ``(N, 3)`` / ``(M, 3)`` point clouds (same units).

    With ``d_ab`` the distance of each point of A to its nearest point of B (and ``d_ba``
    the reverse):

    - ``hausdorff = max(max d_ab, max d_ba)``;
    - ``hd95`` = 95th percentile (linear interpolation, ``numpy.percentile``) of the *pooled*
      distances ``concat(d_ab, d_ba)``;
    - ``chamfer = (mean d_ab + mean d_ba) / 2`` (symmetric mean, not squared).

    All NaN when either cloud is empty.
    """
    a = np.asarray(points_a, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(points_b, dtype=np.float64).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        nan = float("nan")
        return {"hd95": nan, "hausdorff": nan, "chamfer": nan}
    with subnormals(flush=False):  # scipy's KD-tree can crash when they are flushed
        d_ab = cKDTree(b).query(a, k=1)[0]
        d_ba = cKDTree(a).query(b, k=1)[0]
    pooled = np.concatenate([d_ab, d_ba])
    return {"hd95": float(np.percentile(pooled, 95)),
            "hausdorff": float(pooled.max()),
            "chamfer": float(0.5 * (d_ab.mean() + d_ba.mean()))}


def surface_distances(pred_mask: np.ndarray, gt_mask: np.ndarray,
                      affine_ras: np.ndarray) -> dict[str, float]:
    """HD95, Hausdorff and Chamfer (mm) between the boundary voxels of two ``(X, Y, Z)`` masks.

    Boundary clouds come from :func:`boundary_points_mm`; the definitions (pooled-HD95,
    symmetric mean Chamfer) are those of :func:`point_set_distances`. NaN when either mask
    is empty.
    """
    return point_set_distances(boundary_points_mm(pred_mask, affine_ras),
                               boundary_points_mm(gt_mask, affine_ras))


def voxel_volume_ml(affine_ras: np.ndarray) -> float:
    """Volume of one voxel in mL: ``|det(affine[:3, :3])|`` mm^3 / 1000."""
    return abs(float(np.linalg.det(np.asarray(affine_ras, dtype=np.float64)[:3, :3]))) / 1000.0


def volumes_ml(labels: np.ndarray, affine_ras: np.ndarray) -> dict[str, float]:
    """``{"LV", "MYO", "RV"}`` volumes (mL) of an ``(X, Y, Z)`` NIMOSEF label map."""
    labels = np.asarray(labels)
    vox = voxel_volume_ml(affine_ras)
    return {name: float(np.count_nonzero(labels == lab)) * vox
            for lab, name in CLASS_NAMES.items()}


def _max_abs_rate(volumes: np.ndarray, times: np.ndarray) -> float:
    """Largest |dV/dt| (volume per cycle fraction) over consecutive frames of a periodic cycle.

    Frames are sorted by time; the interval from the last frame back to the first one of the
    next cycle (``1 - t_last + t_first``) is included when it is positive.
    """
    if len(volumes) < 2:
        return float("nan")
    order = np.argsort(times, kind="stable")
    v, t = volumes[order], times[order]
    dv = np.append(np.diff(v), v[0] - v[-1])
    dt = np.append(np.diff(t), 1.0 - t[-1] + t[0])
    ok = dt > 1e-9
    if not np.any(ok):
        return float("nan")
    return float(np.max(np.abs(dv[ok] / dt[ok])))


def cardiac_indices(lv_ml: Sequence[float], rv_ml: Sequence[float], myo_ml: Sequence[float],
                    frame_times: Sequence[float] | None = None, ed_index: int | None = None,
                    es_index: int | None = None, cycle_ms: float | None = None) -> dict:
    """Clinical indices from per-frame volume curves (each ``(T,)`` mL).

    ``frame_times``: ``(T,)`` cycle fraction in [0, 1) (default: T frames evenly covering one
    cycle). ED / ES are positions along T; by default ED is the frame of largest LV volume and
    ES the frame of smallest, and both ventricles use the same ED / ES frames (ACDC
    convention). ``MYO_mass_g`` = myocardial volume at ED x 1.05 g/mL. The largest LV
    ``|dV/dt|`` is taken over consecutive frames (periodic cycle) in mL per cycle fraction, and
    in mL/s when ``cycle_ms`` (duration of one cycle) is known, else NaN.
    """
    lv = np.asarray(lv_ml, dtype=np.float64).reshape(-1)
    rv = np.asarray(rv_ml, dtype=np.float64).reshape(-1)
    myo = np.asarray(myo_ml, dtype=np.float64).reshape(-1)
    n = len(lv)
    if n == 0 or len(rv) != n or len(myo) != n:
        raise ValueError(f"volume curves must be non-empty and equally long, got "
                         f"{len(lv)}, {len(rv)}, {len(myo)}")
    times = (np.arange(n) / n if frame_times is None
             else np.asarray(frame_times, dtype=np.float64).reshape(-1))
    if len(times) != n:
        raise ValueError(f"{len(times)} frame times for {n} frames")
    ed = int(np.argmax(lv)) if ed_index is None else int(ed_index)
    es = int(np.argmin(lv)) if es_index is None else int(es_index)
    if not (0 <= ed < n and 0 <= es < n):
        raise ValueError(f"ED/ES index ({ed}, {es}) outside 0..{n - 1}")
    out: dict = {"ed_index": ed, "es_index": es}
    for name, curve in (("LV", lv), ("RV", rv)):
        edv, esv = float(curve[ed]), float(curve[es])
        out[f"{name}_EDV_mL"] = edv
        out[f"{name}_ESV_mL"] = esv
        out[f"{name}_SV_mL"] = edv - esv
        out[f"{name}_EF_pct"] = 100.0 * (edv - esv) / edv if edv > 0 else float("nan")
    out["MYO_mass_g"] = float(myo[ed]) * MYOCARDIUM_DENSITY_G_PER_ML
    rate = _max_abs_rate(lv, times)
    out["LV_max_dVdt_mL_per_cycle"] = rate
    out["LV_max_dVdt_mL_per_s"] = (rate / (float(cycle_ms) / 1000.0)
                                   if cycle_ms and cycle_ms > 0 else float("nan"))
    return out


METRIC_COLUMNS = ["frame", "time", "class", "dice", "hd95", "hausdorff", "chamfer",
                  "vol_pred_mL", "vol_gt_mL"]


def subject_metrics(pred_4d: np.ndarray, gt_4d: np.ndarray, affine_ras: np.ndarray,
                    frame_times: Sequence[float] | None = None,
                    frame_indices: Sequence[int] | None = None,
                    labels: Sequence[int] = (LV, MYO, RV)) -> pd.DataFrame:
    """Per-frame, per-class metrics of ``(X, Y, Z, T)`` predicted vs ground-truth label maps.

    Returns one row per frame and class with columns :data:`METRIC_COLUMNS`: ``frame``
    (``frame_indices[t]``, default ``t``), ``time`` (cycle fraction, default ``t / T``),
    ``class`` ("LV", "MYO", "RV"), Dice, HD95 / Hausdorff / Chamfer (mm) and both volumes (mL).
    Rows are ordered by position along T, then by label.
    """
    pred_4d = np.asarray(pred_4d)
    gt_4d = np.asarray(gt_4d)
    pred_4d = pred_4d[..., None] if pred_4d.ndim == 3 else pred_4d
    gt_4d = gt_4d[..., None] if gt_4d.ndim == 3 else gt_4d
    if pred_4d.shape != gt_4d.shape or pred_4d.ndim != 4:
        raise ValueError(f"prediction {pred_4d.shape} and ground truth {gt_4d.shape} differ")
    n = pred_4d.shape[3]
    times = np.arange(n) / n if frame_times is None else np.asarray(frame_times, float)
    frames = np.arange(n) if frame_indices is None else np.asarray(frame_indices, int)
    if len(times) != n or len(frames) != n:
        raise ValueError(f"{len(times)} times / {len(frames)} frame indices for {n} frames")
    vox = voxel_volume_ml(affine_ras)
    rows = []
    for t in range(n):
        pred, gt = pred_4d[..., t], gt_4d[..., t]
        for lab in labels:
            p, g = pred == lab, gt == lab
            rows.append({"frame": int(frames[t]), "time": float(times[t]),
                         "class": CLASS_NAMES.get(int(lab), str(lab)),
                         "dice": dice(pred, gt, lab),
                         **surface_distances(p, g, affine_ras),
                         "vol_pred_mL": float(np.count_nonzero(p)) * vox,
                         "vol_gt_mL": float(np.count_nonzero(g)) * vox})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def indices_from_metrics(df: pd.DataFrame, source: str = "pred", ed_index: int | None = None,
                         es_index: int | None = None, cycle_ms: float | None = None) -> dict:
    """:func:`cardiac_indices` of the ``vol_{source}_mL`` curves of a :func:`subject_metrics`
    table (``source`` is "pred" or "gt"); ED / ES are positions in the table's frame order."""
    col = f"vol_{source}_mL"
    curves = {name: df.loc[df["class"] == name, col].to_numpy(dtype=np.float64)
              for name in ("LV", "MYO", "RV")}
    times = df.loc[df["class"] == "LV", "time"].to_numpy(dtype=np.float64)
    return cardiac_indices(curves["LV"], curves["RV"], curves["MYO"], frame_times=times,
                           ed_index=ed_index, es_index=es_index, cycle_ms=cycle_ms)


def class_agreement(net_labels: np.ndarray, slice_labels: np.ndarray) -> dict[str, float]:
    """Dice per class between the implicit prior's labels and the slice network's (same grid,
    any shape); NaN where neither has the class."""
    out = {}
    for name, c in (("LV", LV), ("MYO", MYO), ("RV", RV)):
        a, b = net_labels == c, slice_labels == c
        den = int(a.sum()) + int(b.sum())
        out[name] = float(2 * np.logical_and(a, b).sum() / den) if den else float("nan")
    return out
