"""Every affine in one place: voxel <-> scanner RAS (mm) <-> heart frame (mm) <-> normalised.

Conventions
-----------
- ``affine_ras``: 4x4, maps voxel indices ``(i, j, k, 1)`` to scanner RAS millimetres, as
  Slicer shows them. Built from the *true* spacing (see :func:`nifti_affine_ras`).
- Heart frame: origin at the LV centre, x axis LV -> RV (in the short-axis plane), z axis the
  long axis (stack normal) pointing apex -> base, y = z x x. ``rotation`` holds the axes as
  columns in RAS, so ``ras = origin + rotation @ heart_mm``.
- Normalised coordinates: ``coords_norm = heart_mm / scale_mm`` (about [-1, 1] over the ROI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LV, MYO, RV = 1, 2, 3


def nifti_affine_ras(img) -> np.ndarray:
    """The voxel -> RAS affine of a nibabel image, with the true spacing from ``pixdim``.

    Some files (ACDC) carry an sform with unit scale while ``pixdim`` holds the real voxel
    size; ITK, and so Slicer, use ``pixdim``. Here too: the direction comes from the
    header affine, the column lengths from ``pixdim``, so volumes and distances agree
    with what Slicer shows.
    """
    affine = np.asarray(img.affine, dtype=np.float64).copy()
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    cols = affine[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms <= 0) or not np.all(np.isfinite(cols)):
        raise ValueError("degenerate affine")
    if np.all(zooms > 0) and not np.allclose(norms, zooms, rtol=1e-3, atol=1e-4):
        affine[:3, :3] = cols / norms * zooms
    return affine


def spacing_of(affine_ras: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along i, j, k."""
    return np.linalg.norm(np.asarray(affine_ras)[:3, :3], axis=0)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to ``(N, 3)`` points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def voxel_to_ras(affine_ras: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """``(N, 3)`` voxel indices (float ok) -> ``(N, 3)`` RAS mm."""
    return apply_affine(affine_ras, ijk)


def ras_to_voxel(affine_ras: np.ndarray, ras: np.ndarray) -> np.ndarray:
    """``(N, 3)`` RAS mm -> ``(N, 3)`` continuous voxel indices."""
    return apply_affine(np.linalg.inv(affine_ras), ras)


def grid_ijk(shape: tuple[int, int, int]) -> np.ndarray:
    """All voxel indices of a grid, C order, ``(X*Y*Z, 3)`` int64."""
    return np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)


def crop_affine(affine_ras: np.ndarray, offset_ijk) -> np.ndarray:
    """Affine of a sub-grid whose voxel (0, 0, 0) is voxel ``offset_ijk`` of the parent."""
    out = np.array(affine_ras, dtype=np.float64, copy=True)
    out[:3, 3] = voxel_to_ras(affine_ras, np.asarray(offset_ijk, dtype=np.float64)[None])[0]
    return out


def resample_grid_z(affine_ras: np.ndarray, shape: tuple[int, int, int], factor: int):
    """Grid with ``factor`` times more slices covering exactly the same slab.

    Each original slice (thickness ``dz``) is split into ``factor`` sub-slices of thickness
    ``dz / factor``; sub-slice centres sit at ``k_new = (k + 0.5) * factor - 0.5``. The new
    volume overlays the original exactly in a viewer. Returns ``(affine_new, shape_new)``.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError("res factor must be >= 1")
    a = np.array(affine_ras, dtype=np.float64, copy=True)
    kcol = a[:3, 2].copy()
    a[:3, 2] = kcol / factor
    # new voxel 0 centre = old k = -0.5 + 0.5 / factor
    a[:3, 3] = a[:3, 3] + kcol * (-0.5 + 0.5 / factor)
    return a, (int(shape[0]), int(shape[1]), int(shape[2]) * factor)


def new_to_old_k(k_new: np.ndarray, factor: int) -> np.ndarray:
    """Continuous original slice index of each slice of a :func:`resample_grid_z` grid."""
    return (np.asarray(k_new, dtype=np.float64) + 0.5) / factor - 0.5


def interpolate_slices(values: np.ndarray, factor: int) -> np.ndarray:
    """Per-slice ``values (..., Z)`` onto the ``Z*factor`` sub-slices of a
    :func:`resample_grid_z` grid: linear between slice centres, the edge slices held."""
    values = np.asarray(values)
    factor = int(factor)
    if factor == 1:
        return values
    n_z = values.shape[-1]
    k = np.clip(new_to_old_k(np.arange(n_z * factor), factor), 0, n_z - 1)
    k0 = np.floor(k).astype(int)
    k1 = np.minimum(k0 + 1, n_z - 1)
    w = (k - k0).astype(values.dtype if values.dtype.kind == "f" else np.float64)
    return values[..., k0] * (1 - w) + values[..., k1] * w


@dataclass
class HeartFrame:
    """Heart coordinate frame: ``ras = origin_ras + rotation @ heart_mm``; norm = mm / scale."""

    origin_ras: np.ndarray
    rotation: np.ndarray
    scale_mm: float = 100.0

    def __post_init__(self):
        self.origin_ras = np.asarray(self.origin_ras, dtype=np.float64).reshape(3)
        self.rotation = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)
        self.scale_mm = float(self.scale_mm)

    def ras_to_heart_mm(self, ras: np.ndarray) -> np.ndarray:
        return (np.asarray(ras, dtype=np.float64) - self.origin_ras) @ self.rotation

    def heart_mm_to_ras(self, heart_mm: np.ndarray) -> np.ndarray:
        return np.asarray(heart_mm, dtype=np.float64) @ self.rotation.T + self.origin_ras

    def ras_to_norm(self, ras: np.ndarray) -> np.ndarray:
        return self.ras_to_heart_mm(ras) / self.scale_mm

    def norm_to_ras(self, norm: np.ndarray) -> np.ndarray:
        return self.heart_mm_to_ras(np.asarray(norm, dtype=np.float64) * self.scale_mm)

    def vectors_norm_to_ras(self, vec_norm: np.ndarray) -> np.ndarray:
        """Displacement vectors in normalised units -> RAS mm (rotation and scale only)."""
        return (np.asarray(vec_norm, dtype=np.float64) * self.scale_mm) @ self.rotation.T

    def heart_to_ras_matrix(self) -> np.ndarray:
        """4x4 heart-frame mm -> RAS mm."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.origin_ras
        return m

    def voxel_to_norm_matrix(self, affine_ras: np.ndarray) -> np.ndarray:
        """4x4 voxel -> normalised heart coordinates."""
        s = np.diag([1 / self.scale_mm] * 3 + [1.0])
        return s @ np.linalg.inv(self.heart_to_ras_matrix()) @ np.asarray(affine_ras)

    def to_dict(self) -> dict:
        return {"origin_ras": self.origin_ras.tolist(), "rotation": self.rotation.tolist(),
                "scale_mm": self.scale_mm}

    @classmethod
    def from_dict(cls, d: dict) -> HeartFrame:
        return cls(d["origin_ras"], d["rotation"], d.get("scale_mm", 100.0))


def rotation_about_z(degrees: float) -> np.ndarray:
    """3x3 rotation by ``degrees`` about the z axis (a heart frame's long axis)."""
    th = np.radians(degrees)
    return np.array([[np.cos(th), -np.sin(th), 0.0], [np.sin(th), np.cos(th), 0.0],
                     [0.0, 0.0, 1.0]])


def orthonormal_frame(x_axis: np.ndarray, z_axis: np.ndarray) -> np.ndarray:
    """Rotation with columns (x, y, z): z as given, x made orthogonal to z, y = z x x."""
    z = np.asarray(z_axis, dtype=np.float64)
    z = z / np.linalg.norm(z)
    x = np.asarray(x_axis, dtype=np.float64)
    x = x - z * (x @ z)
    n = np.linalg.norm(x)
    if n < 1e-8:
        raise ValueError("x axis is parallel to the long axis")
    x = x / n
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def stack_normal(affine_ras: np.ndarray) -> np.ndarray:
    """Unit normal of the slice planes (direction of increasing k) in RAS."""
    a = np.asarray(affine_ras)[:3, :3]
    n = np.cross(a[:, 0], a[:, 1])
    n = n / np.linalg.norm(n)
    if n @ a[:, 2] < 0:
        n = -n
    return n


def _base_direction_sign(labels: np.ndarray, affine_ras: np.ndarray, normal: np.ndarray) -> float:
    """+1 when ``normal`` points apex -> base, else -1.

    Cues, strongest first: the apical cap (slices with myocardium but no LV blood pool) lies at
    the apex end; otherwise the heart (LV + MYO) cross-section is larger towards the base, so
    its area-weighted centre lies basal of the middle of its extent.
    """
    heart = np.argwhere((labels == LV) | (labels == MYO))
    pos = voxel_to_ras(affine_ras, heart) @ normal
    lo, hi = pos.min(), pos.max()
    if hi - lo < 1e-6:
        return 1.0
    lv_pos = voxel_to_ras(affine_ras, np.argwhere(labels == LV)) @ normal
    tol = 1e-3 * (hi - lo)
    cap_low = lv_pos.min() > lo + tol  # myocardium below the lowest blood-pool slice
    cap_high = lv_pos.max() < hi - tol
    if cap_low != cap_high:
        return 1.0 if cap_low else -1.0
    return 1.0 if pos.mean() > 0.5 * (lo + hi) else -1.0


def heart_frame_from_labels(labels: np.ndarray, affine_ras: np.ndarray,
                            scale_mm: float = 100.0) -> HeartFrame:
    """Heart frame of a labelled 3D frame (NIMOSEF labels, usually end-diastole).

    Origin: centroid of the LV blood pool. x: LV -> RV centroid, projected into the slice
    plane. z: stack normal, signed apex -> base by :func:`_base_direction_sign`.
    Raises ValueError when the LV or RV is missing.
    """
    labels = np.asarray(labels)
    lv = np.argwhere(labels == LV)
    rv = np.argwhere(labels == RV)
    if len(lv) == 0:
        raise ValueError("no LV blood pool (label 1) in the segmentation")
    if len(rv) == 0:
        raise ValueError("no RV blood pool (label 3) in the segmentation")
    lv_ras = voxel_to_ras(affine_ras, lv)
    rv_ras = voxel_to_ras(affine_ras, rv)
    origin = lv_ras.mean(0)
    normal = stack_normal(affine_ras)
    normal = normal * _base_direction_sign(labels, affine_ras, normal)
    x_axis = rv_ras.mean(0) - origin
    return HeartFrame(origin, orthonormal_frame(x_axis, normal), scale_mm)
