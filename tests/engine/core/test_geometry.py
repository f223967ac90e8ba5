"""Geometry on real ACDC headers: true spacing, z super-resolution grids, heart frame."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nimosef_engine.core.geometry import (
    HeartFrame,
    apply_affine,
    crop_affine,
    grid_ijk,
    heart_frame_from_labels,
    new_to_old_k,
    nifti_affine_ras,
    ras_to_voxel,
    resample_grid_z,
    voxel_to_ras,
)
from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.sampling.fields import grid_coords_norm, slice_shift_ras

ACDC = Path(__file__).resolve().parents[2] / "data" / "acdc"

GT = ACDC / "patient001" / "patient001_frame01_gt.nii.gz"


def test_true_spacing_replaces_unit_sform():
    img = nib.load(str(GT))
    assert np.allclose(np.abs(np.diag(img.affine)[:3]), 1.0)  # the ACDC header trap
    aff = nifti_affine_ras(img)
    np.testing.assert_allclose(np.abs(np.diag(aff)[:3]), [1.5625, 1.5625, 10.0])
    np.testing.assert_allclose(np.sign(np.diag(aff)[:3]), np.sign(np.diag(img.affine)[:3]))


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_resampled_grid_overlays_the_original(factor):
    _, aff = load_nifti(GT)
    shape = (216, 256, 10)
    aff_f, shape_f = resample_grid_z(aff, shape, factor)
    assert shape_f == (216, 256, 10 * factor)
    if factor == 1:
        np.testing.assert_allclose(aff_f, aff)
    # every new voxel centre lies inside the slab of its original slice, same in-plane place
    ijk = np.array([[5, 7, k] for k in range(shape_f[2])])
    ras = voxel_to_ras(aff_f, ijk)
    old = ras_to_voxel(aff, ras)
    np.testing.assert_allclose(old[:, :2], [[5, 7]] * len(ijk), atol=1e-9)
    np.testing.assert_allclose(old[:, 2], new_to_old_k(ijk[:, 2], factor), atol=1e-9)
    assert np.all(np.floor(old[:, 2] + 0.5) == ijk[:, 2] // factor)
    # the slab covered is exactly the original one: first/last sub-slice edges
    dz = 10.0 / factor
    first_edge = ras[0, 2] - np.sign(aff[2, 2]) * dz / 2
    last_edge = ras[-1, 2] + np.sign(aff[2, 2]) * dz / 2
    np.testing.assert_allclose([first_edge, last_edge], [aff[2, 3] - 5.0, aff[2, 3] + 95.0])


def test_crop_affine_maps_to_the_same_world_points():
    _, aff = load_nifti(GT)
    c = crop_affine(aff, (30, 40, 2))
    np.testing.assert_allclose(voxel_to_ras(c, [[0, 0, 0], [3, 4, 5]]),
                               voxel_to_ras(aff, [[30, 40, 2], [33, 44, 7]]))


def test_heart_frame_from_real_labels():
    gt, aff = load_nifti(GT, dtype=np.uint8)
    lab = remap_acdc_labels(gt)
    hf = heart_frame_from_labels(lab, aff)
    np.testing.assert_allclose(hf.rotation.T @ hf.rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(hf.rotation) > 0
    # origin inside the LV blood pool
    ijk = np.round(ras_to_voxel(aff, hf.origin_ras[None])[0]).astype(int)
    assert lab[tuple(ijk)] == 1
    # x axis points to the RV; z axis apex -> base (ACDC slice 0 is basal)
    rv = voxel_to_ras(aff, np.argwhere(lab == 3)).mean(0)
    assert (rv - hf.origin_ras) @ hf.rotation[:, 0] > 20
    assert hf.rotation[:, 2] @ aff[:3, 2] < 0
    # round trips
    pts = voxel_to_ras(aff, grid_ijk((3, 3, 3)))
    np.testing.assert_allclose(hf.norm_to_ras(hf.ras_to_norm(pts)), pts, atol=1e-9)
    hf2 = HeartFrame.from_dict(hf.to_dict())
    np.testing.assert_allclose(hf2.ras_to_norm(pts), hf.ras_to_norm(pts))


def test_slice_shifts_move_the_sampled_points_in_plane():
    """Voxel (i, j, k) of a slice shifted by (dx, dy) is sampled where (i - dx, j - dy, k)
    was; sub-slices of a finer z grid take shifts interpolated between slice centres, and
    points on the grid are offset alike (slice_shift_ras)."""
    aff = np.diag([1.5, 1.5, 8.0, 1.0])
    aff[:3, 3] = (10.0, -20.0, 5.0)
    heart = HeartFrame(np.zeros(3), np.eye(3), 100.0)
    shape = (6, 5, 3)
    shift = np.array([[0, 0], [2, -1], [0, 0]])
    base = grid_coords_norm(shape, aff, heart).reshape(*shape, 3)
    moved = grid_coords_norm(shape, aff, heart, shift).reshape(*shape, 3)
    np.testing.assert_allclose(moved[2:, :4, 1], base[:-2, 1:, 1], atol=1e-6)
    np.testing.assert_array_equal(moved[:, :, [0, 2]], base[:, :, [0, 2]])
    pts = apply_affine(aff, grid_ijk(shape))
    np.testing.assert_allclose(heart.ras_to_norm(pts - slice_shift_ras(pts, aff, shift)),
                               moved.reshape(-1, 3), atol=1e-6)
    np.testing.assert_array_equal(slice_shift_ras(pts, aff, None), 0)
    aff2, shape2 = resample_grid_z(aff, shape, 2)
    d2 = (grid_coords_norm(shape2, aff2, heart, shift, 2)
          - grid_coords_norm(shape2, aff2, heart)).reshape(*shape2, 3)
    # sub-slice centres at slice -0.25 (held at 0), 0.25, 0.75, 1.25, 1.75, 2.25 (held at 2)
    np.testing.assert_allclose(d2[0, 0, :, 0] / -0.015, [0, 0.5, 1.5, 1.5, 0.5, 0], atol=1e-5)
    np.testing.assert_allclose(d2[0, 0, :, 1] / 0.015, [0, 0.25, 0.75, 0.75, 0.25, 0],
                               atol=1e-5)
    with pytest.raises(ValueError, match="2 slice shifts for a grid of 3 slices"):
        grid_coords_norm(shape, aff, heart, shift[:2])
