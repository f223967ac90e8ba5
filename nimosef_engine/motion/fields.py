"""Dense motion fields on the input's grid, both directions, as ITK and Slicer apply them.

For every frame ``f`` of a cine and its end-diastole ``e``:

- ``from_ed`` ``u_f(x)``: the tissue at ED position ``x`` is at ``x + u_f(x)`` in frame ``f``
  (Lagrangian, on the ED grid; glyphs, point tracking and strain);
- ``to_ed`` ``v_f(y)``: the tissue at ``y`` in frame ``f`` was at ``y + v_f(y)`` at ED: the
  map ITK's ``DisplacementFieldTransform`` applies when it resamples an ED image or label map
  into frame ``f``.

The network gives positions relative to its time 0 (``P_f(x) = x + u(x, t_f)``, points on the
ED grid, :func:`tables.point_displacements`); ``to_ed`` is ``P_e o P_f^-1``, with the inverse
found by fixed-point iteration (:func:`invert_field`). The network's motion is as
sharp as the population allows and folds in places; the engine's own per-frame label maps
(refined by each frame's image) are sharper, so ``to_ed`` is a diffeomorphic registration of
the ED label maps onto frame ``f``'s, started from the network's motion
(:func:`register_labels`). ``from_ed`` is its inverse by Newton iteration
(:func:`invert_field`), its composition error measured (:func:`composition_error_mm`).

Arrays are on the subject's crop grid ``(x, y, z)`` (zero outside it when written); vectors
``(..., 3)`` are in crop voxel units unless named ``_ras`` / ``_mm``. Files hold LPS mm
vectors on the input's whole grid (:func:`write_itk_field`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from nimosef_engine.core.atomic import atomic_path
from nimosef_engine.core.geometry import apply_affine, grid_ijk, spacing_of
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.sampling.fields import embed_frame, slice_shift_ras
from nimosef_engine.sampling.memory import DEFAULT_CHUNK
from nimosef_engine.sampling.tables import point_displacements

INVERT_ITERATIONS = 20  # Newton iterations at most (:func:`invert_field`)
INVERT_TOL_VOXELS = 1e-2  # ... stopped when no vector changes by more than this
RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RegistrationConfig:
    """The registration of label maps (:func:`register_labels`). ``sigmas_mm``: the label
    maps are smoothed by each in turn (coarse to fine), ``steps`` Adam steps each at ``lr``
    voxels; ``smooth`` weighs the squared gradient (mm/mm) of the velocity,
    ``smooth_mm`` the Gaussian that makes the velocity smooth; ``margin_mm`` grows the box
    around the heart where it is fitted (:func:`label_box`), on every ``stride``-th voxel
    in-plane."""

    sigmas_mm: tuple[float, ...] = (4.0, 2.0)
    steps: int = 40
    lr: float = 0.3
    smooth: float = 0.02
    smooth_mm: float = 3.0
    margin_mm: float = 12.0
    stride: int = 2
    min_sigma_nodes: float = 0.7


def vox_to_ras_vectors(vec_vox: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """Voxel-unit vectors ``(..., 3)`` -> RAS mm (the affine's linear part)."""
    return np.asarray(vec_vox, np.float64) @ np.asarray(affine_ras)[:3, :3].T


def ras_to_vox_vectors(vec_ras: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """RAS mm vectors ``(..., 3)`` -> voxel units."""
    return np.asarray(vec_ras, np.float64) @ np.linalg.inv(np.asarray(affine_ras)[:3, :3]).T


def network_displacements(net, code: torch.Tensor, sd: SubjectData, times,
                          pose_matrix: torch.Tensor | None = None,
                          slice_shift: np.ndarray | None = None, device="cpu",
                          chunk: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
    """The network's displacement ``u(x, t)`` of every crop voxel ``x`` (ED position) at each
    of ``times``: one ``(x, y, z, 3)`` float32 array of voxel-unit vectors per time."""
    aff, shape = sd.crop_affine_ras, sd.grid_shape
    pts = apply_affine(aff, grid_ijk(shape))
    offsets = slice_shift_ras(pts, aff, slice_shift)
    for u_ras in point_displacements(net, code, sd.heart, pts, times, device, pose_matrix,
                                     offsets, chunk):
        yield ras_to_vox_vectors(u_ras, aff).reshape(*shape, 3).astype(np.float32)


def sample_field(field: np.ndarray, points_vox: np.ndarray) -> np.ndarray:
    """Trilinear value of ``field (x, y, z, 3)`` at voxel positions ``points_vox (..., 3)``;
    beyond the grid, the value at its edge (a slab's end slices reach half a slice beyond
    their centres; in-plane the fields fade to zero well inside the crop)."""
    pts = np.moveaxis(np.asarray(points_vox, np.float64), -1, 0)
    return np.stack([ndimage.map_coordinates(field[..., c], pts, order=1, mode="nearest")
                     for c in range(3)], -1)


def _identity(shape) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape],
                                indexing="ij"), -1)


def invert_field(u: np.ndarray, init: np.ndarray | None = None,
                 iterations: int = INVERT_ITERATIONS, tol: float = INVERT_TOL_VOXELS,
                 box: tuple[slice, ...] | None = None) -> tuple[np.ndarray, int]:
    """The inverse ``v`` of the map ``x -> x + u(x)``: ``y + v(y) = x`` where ``x + u(x) = y``.

    Iterates on the residual ``r(y) = v(y) + u(y + v(y))`` from ``init`` (default ``-u``):
    a Newton step ``v <- v - (I + grad u)^-1 r`` (the fixed-point step ``v <- v - r`` where
    ``I + grad u`` is near singular), each voxel keeping whichever of its old and new vector
    has the smaller residual, until no vector changes by more than ``tol``. Only the voxels
    of ``box`` are solved for (``u`` is zero beyond it: so is ``v``). ``u (x, y, z, 3)``
    voxel units. Returns ``(v float32, iterations run)``."""
    u = np.asarray(u, np.float64)
    box = box or tuple(slice(0, n) for n in u.shape[:3])
    grid = _identity(u.shape[:3])[box]
    grad = np.stack([_gradient_safe(u[..., c]) for c in range(3)], -2).reshape(*u.shape[:3], 9)
    out = np.zeros(u.shape, np.float32)
    v = -u[box] if init is None else np.asarray(init, np.float64)[box].copy()

    def residual(vv):
        return vv + sample_field(u, grid + vv)

    r = residual(v)
    it = 0
    while it < iterations:
        it += 1
        jac = sample_field9(grad, grid + v).reshape(*v.shape, 3) + np.eye(3)
        ok = np.abs(np.linalg.det(jac)) > 0.05
        step = r.copy()
        step[ok] = np.linalg.solve(jac[ok], r[ok][..., None])[..., 0]
        cand = v - step
        r_new = residual(cand)
        better = (r_new ** 2).sum(-1) < (r ** 2).sum(-1)
        change = float(np.abs(step[better]).max()) if better.any() else 0.0
        v[better], r[better] = cand[better], r_new[better]
        if change < tol:
            break
    out[box] = v
    return out, it


def sample_field9(field: np.ndarray, points_vox: np.ndarray) -> np.ndarray:
    """:func:`sample_field` for a field of any number of components ``(x, y, z, C)``."""
    pts = np.moveaxis(np.asarray(points_vox, np.float64), -1, 0)
    return np.stack([ndimage.map_coordinates(field[..., c], pts, order=1, mode="nearest")
                     for c in range(field.shape[-1])], -1)


def compose(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """Displacement of the map ``x -> y = x + first(x) -> y + then(y)`` (voxel units)."""
    return first + sample_field(then, _identity(first.shape[:3]) + first).astype(np.float32)


def composition_error_mm(u: np.ndarray, v: np.ndarray, affine_ras: np.ndarray,
                         mask: np.ndarray) -> dict[str, float]:
    """``|x + u(x) + v(x + u(x))|`` (mm) over the voxels of ``mask``: how far ``v`` is from
    the inverse of ``u``. Returns its mean and max."""
    err = vox_to_ras_vectors(compose(u, v)[mask], affine_ras)
    norm = np.linalg.norm(err, axis=-1)
    if norm.size == 0:
        return {"mean_mm": 0.0, "max_mm": 0.0}
    return {"mean_mm": float(norm.mean()), "max_mm": float(norm.max())}


def jacobian_det(u: np.ndarray) -> np.ndarray:
    """``det(I + grad u)`` of ``x -> x + u(x)`` at every voxel (central differences; the same
    in voxel and mm units). ``u (x, y, z, 3)`` voxel units -> ``(x, y, z)``."""
    grads = np.stack([np.stack(np.gradient(u[..., c], axis=(0, 1, 2)), -1)
                      if min(u.shape[:3]) > 1 else _gradient_safe(u[..., c])
                      for c in range(3)], -2)  # (..., component, axis)
    jac = grads + np.eye(3)
    return np.linalg.det(jac)


def _gradient_safe(a: np.ndarray) -> np.ndarray:
    return np.stack([np.gradient(a, axis=i) if a.shape[i] > 1 else np.zeros_like(a)
                     for i in range(3)], -1)


def heart_mask(labels: np.ndarray, affine_ras: np.ndarray, margin_mm: float) -> np.ndarray:
    """Voxels of the heart (any label) and within ``margin_mm`` of it, in-plane."""
    heart = np.asarray(labels) > 0
    if margin_mm <= 0 or not heart.any():
        return heart
    sp = spacing_of(affine_ras)
    dist = ndimage.distance_transform_edt(~heart, sampling=sp)
    return dist <= margin_mm


def folding_share(u: np.ndarray, mask: np.ndarray) -> float:
    """Share of the voxels of ``mask`` where ``x -> x + u(x)`` folds (``det J <= 0``)."""
    n = int(mask.sum())
    return float((jacobian_det(u)[mask] <= 0).sum() / n) if n else 0.0


# ---- correction by the engine's own label maps ----------------------------------------------

def soft_labels(labels: np.ndarray, spacing_mm, sigma_mm: float,
                classes=(1, 2, 3)) -> np.ndarray:
    """One-hot maps of ``classes`` ``(C, x, y, z)`` float32, Gaussian-smoothed by
    ``sigma_mm`` (per axis in voxels from ``spacing_mm``)."""
    sig = [sigma_mm / s for s in spacing_mm]
    return np.stack([ndimage.gaussian_filter((labels == c).astype(np.float32), sig,
                                             mode="constant") for c in classes])


def _norm_grid(disp: torch.Tensor, offset, shape) -> torch.Tensor:
    """Voxel displacement ``(a, b, c, 3)`` of a box whose voxel 0 is voxel ``offset`` of a grid
    of ``shape`` -> ``grid_sample`` grid ``(1, a, b, c, 3)`` of the displaced positions in
    [-1, 1] of that grid (components reversed: grid_sample's x is the last axis)."""
    size = torch.tensor([max(n - 1, 1) for n in shape], dtype=disp.dtype)
    ident = torch.stack(torch.meshgrid(*[torch.arange(o, o + n, dtype=disp.dtype)
                                         for o, n in zip(offset, disp.shape[:3], strict=True)],
                                       indexing="ij"), -1)
    pos = (ident + disp) / size * 2 - 1
    return pos.flip(-1)[None]


def _det_fd(disp: torch.Tensor) -> torch.Tensor:
    """``det(I + grad disp)`` by forward differences, ``(x-1, y-1, z-1)`` (voxel units)."""
    d0 = disp[1:, :-1, :-1] - disp[:-1, :-1, :-1]
    d1 = disp[:-1, 1:, :-1] - disp[:-1, :-1, :-1]
    d2 = disp[:-1, :-1, 1:] - disp[:-1, :-1, :-1]
    j = torch.stack([d0, d1, d2], -1) + torch.eye(3, dtype=disp.dtype)
    return torch.linalg.det(j)


def label_box(masks, affine_ras: np.ndarray, margin_mm: float) -> tuple[slice, ...]:
    """Bounding box of the union of ``masks`` grown by ``margin_mm`` in-plane (all slices)."""
    union = np.logical_or.reduce([np.asarray(m) > 0 for m in masks])
    sp = spacing_of(affine_ras)
    idx = np.argwhere(union)
    lo, hi = idx.min(0), idx.max(0) + 1
    grow = np.ceil(margin_mm / sp[:2]).astype(int)
    return (slice(max(0, lo[0] - grow[0]), min(union.shape[0], hi[0] + grow[0])),
            slice(max(0, lo[1] - grow[1]), min(union.shape[1], hi[1] + grow[1])),
            slice(0, union.shape[2]))


def _gauss_kernel(sigma_vox: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma_vox)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma_vox, 1e-6)) ** 2)
    return k / k.sum()


def smooth_field(w: torch.Tensor, sigma_vox) -> torch.Tensor:
    """Separable Gaussian smoothing of ``w (a, b, c, 3)`` (``sigma_vox`` per axis; zero
    padding, so the field fades to zero at the box's edge)."""
    x = w.permute(3, 0, 1, 2)[:, None]  # (3, 1, a, b, c)
    for axis, sig in enumerate(sigma_vox):
        if sig < 0.3:
            continue
        k = _gauss_kernel(float(sig))
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(k)
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = len(k) // 2
        x = F.conv3d(F.pad(x, pad), k.view(shape))
    return x[:, 0].permute(1, 2, 3, 0)


def exp_velocity(w: torch.Tensor, squarings: int = 5, step=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """Displacement of the map ``exp(w)`` of a stationary velocity field ``w (a, b, c, 3)``
    by scaling and squaring: a diffeomorphism for a smooth ``w``. Vectors are in voxel units
    of a grid whose nodes are ``step`` voxels apart along each axis."""
    d = w / 2 ** squarings
    shape = w.shape[:3]
    per_node = torch.tensor(step, dtype=w.dtype)
    for _ in range(squarings):
        d = d + F.grid_sample(d.permute(3, 0, 1, 2)[None],
                              _norm_grid(d / per_node, (0, 0, 0), shape),
                              mode="bilinear", padding_mode="border",
                              align_corners=True)[0].permute(1, 2, 3, 0)
    return d


def register_labels(labels_ed: np.ndarray, labels_f: np.ndarray, affine_ras: np.ndarray,
                    init: np.ndarray | None = None,
                    cfg: RegistrationConfig | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The map ``y -> y + v(y)`` from frame ``f`` to ED that carries the ED label maps onto
    frame ``f``'s: ``v = exp(w)`` of a smooth stationary velocity ``w`` (Gaussian of
    ``cfg.smooth_mm``, so the map is a diffeomorphism and ``exp(-w)`` its inverse) minimising
    the squared difference of the smoothed one-hot maps (:func:`soft_labels`, coarse to fine)
    plus ``cfg.smooth`` times its squared gradient (mm/mm). ``w`` is fitted on every
    ``cfg.stride``-th voxel in-plane of a box around the heart (:func:`label_box`), zero
    beyond it. ``init (x, y, z, 3)``: a starting velocity (voxel units), e.g. the network's
    motion. ``labels_* (x, y, z)`` uint8. Returns ``(v, w)`` ``(x, y, z, 3)`` float32 voxel
    units on the whole grid."""
    cfg = cfg or RegistrationConfig()
    shape = labels_ed.shape
    v_out = np.zeros((*shape, 3), np.float32)
    w_out = np.zeros((*shape, 3), np.float32)
    if not (labels_ed > 0).any() or not (labels_f > 0).any() or min(shape) < 2:
        return v_out, w_out
    sp = spacing_of(affine_ras)
    box = label_box([labels_ed, labels_f], affine_ras, cfg.margin_mm)
    st = (cfg.stride, cfg.stride, 1)
    coarse = tuple(slice(b.start, b.stop, k) for b, k in zip(box, st, strict=True))
    node_mm = [s * k for s, k in zip(sp, st, strict=True)]
    sig = [max(cfg.smooth_mm / s, cfg.min_sigma_nodes) for s in node_mm]
    lin = torch.from_numpy(np.asarray(affine_ras)[:3, :3].astype(np.float32))
    c_shape = tuple(len(range(b.start, b.stop, k)) for b, k in zip(box, st, strict=True))
    p = (torch.zeros((*c_shape, 3)) if init is None else
         torch.from_numpy(np.ascontiguousarray(init[coarse], np.float32))).requires_grad_(True)
    opt = torch.optim.Adam([p], lr=cfg.lr)

    def sample_grid(disp: torch.Tensor) -> torch.Tensor:  # coarse nodes -> whole-grid positions
        size = torch.tensor([max(n - 1, 1) for n in shape], dtype=disp.dtype)
        nodes = torch.stack(torch.meshgrid(*[torch.arange(b.start, b.stop, k, dtype=disp.dtype)
                                             for b, k in zip(box, st, strict=True)],
                                           indexing="ij"), -1)
        return ((nodes + disp) / size * 2 - 1).flip(-1)[None]

    with torch.enable_grad():
        for sigma in cfg.sigmas_mm:
            moving = torch.from_numpy(soft_labels(labels_ed, sp, sigma))[None]
            fixed = torch.from_numpy(np.ascontiguousarray(
                soft_labels(labels_f, sp, sigma)[(slice(None), *coarse)]))
            scale = float(fixed.square().sum().clamp_min(1.0))
            for _ in range(cfg.steps):
                w = smooth_field(p, sig)
                disp = exp_velocity(w, step=st)
                warped = F.grid_sample(moving, sample_grid(disp), mode="bilinear",
                                       padding_mode="zeros", align_corners=True)[0]
                data = (warped - fixed).square().sum() / scale
                w_mm = w @ lin.T
                reg = sum((w_mm.diff(dim=a) / float(node_mm[a])).square().mean()
                          for a in range(3))
                loss = data + cfg.smooth * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
    with torch.no_grad():
        w = smooth_field(p, sig).permute(3, 0, 1, 2)[None]
        box_shape = tuple(b.stop - b.start for b in box)
        w = F.interpolate(w, size=box_shape, mode="trilinear", align_corners=True)[0]
        w = w.permute(1, 2, 3, 0).contiguous()
        w_out[box] = w.numpy()
        v_out[box] = exp_velocity(w).numpy()
    return v_out, w_out


# ---- files ---------------------------------------------------------------------------------

def lps_geometry(affine_ras: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """``(origin, spacing, direction)`` of a grid as SimpleITK holds it (LPS), from its voxel
    -> RAS affine (true spacing, :func:`geometry.nifti_affine_ras`)."""
    a = np.diag([*RAS_TO_LPS, 1.0]) @ np.asarray(affine_ras, np.float64)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    direction = a[:3, :3] / spacing
    return tuple(a[:3, 3]), tuple(spacing), tuple(direction.ravel())


def write_itk_field(path: str | Path, disp_vox: np.ndarray, sd: SubjectData) -> Path:
    """Write a crop-grid displacement field ``(x, y, z, 3)`` (voxel units) as an ITK
    displacement field: LPS mm vectors on the input's whole grid (zero outside the crop),
    with its origin, spacing and direction; ``sitk.DisplacementFieldTransform`` and Slicer
    (a grid transform) read it. Written atomically."""
    import SimpleITK as sitk

    disp_ras = vox_to_ras_vectors(disp_vox, sd.crop_affine_ras) * RAS_TO_LPS
    full = np.stack([embed_frame(disp_ras[..., c].astype(np.float32), sd, 1, fill=0.0)
                     for c in range(3)], -1)
    img = sitk.GetImageFromArray(np.ascontiguousarray(full.transpose(2, 1, 0, 3)),
                                 isVector=True)
    origin, spacing, direction = lps_geometry(sd.source_affine_ras)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    path = Path(path)
    with atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + ".nii.gz")
        sitk.WriteImage(img, str(named), useCompression=True)
        named.rename(tmp)
    return path


def read_itk_field_ras(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A field written by :func:`write_itk_field` -> ``(RAS mm vectors (X, Y, Z, 3),
    voxel -> RAS affine)``."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0, 3) * RAS_TO_LPS
    d = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    aff = np.eye(4)
    aff[:3, :3] = d
    aff[:3, 3] = img.GetOrigin()
    return arr, np.diag([*RAS_TO_LPS, 1.0]) @ aff


def field_file_jacobian_det(path: str | Path) -> np.ndarray:
    """``det(I + grad u)`` ``(X, Y, Z)`` of an ITK displacement field file on its own grid,
    whatever the grid's direction (SimpleITK's ``DisplacementFieldJacobianDeterminant`` takes
    the derivatives along the image axes as if they were the physical ones, which is wrong on
    an oblique grid: a field that folds nowhere can show folding there)."""
    u_ras, aff = read_itk_field_ras(path)
    return jacobian_det(ras_to_vox_vectors(u_ras, aff))

