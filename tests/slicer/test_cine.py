"""Cine <-> volume sequence: load, find from a volume, export for the engine (geometry kept)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from NimosefSlicerLib import cine as cine_lib
from NimosefSlicerLib import scenarios

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def itk_affine_ras(path) -> np.ndarray:
    """Voxel -> RAS of the first 3 axes as ITK (and so Slicer's own reader) sees the file."""
    img = sitk.ReadImage(str(path))
    d = img.GetDimension()
    direction = np.array(img.GetDirection()).reshape(d, d)[:3, :3]
    a = np.eye(4)
    a[:3, :3] = LPS_TO_RAS @ direction @ np.diag(img.GetSpacing()[:3])
    a[:3, 3] = LPS_TO_RAS @ np.array(img.GetOrigin()[:3])
    return a


def test_load_cine_matches_slicer_reader(ctx, sample_cine):
    cine = scenarios.load_and_check_cine(ctx, sample_cine)
    assert cine.n_frames == 12
    assert cine.sequence.GetIndexName() in ("time", "frame")
    # ACDC header trap: the sform says 1 mm voxels, pixdim (and ITK / Slicer) 1.786 mm
    want = itk_affine_ras(sample_cine)
    got = cine_lib.ijk_to_ras(cine.proxy)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got[:3, :3], axis=0), [1.7857, 1.7857, 10.0],
                               atol=1e-3)
    itk = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_cine)))  # (T, Z, Y, X)
    cine.browser.SetSelectedItemNumber(7)
    proxy_xyz = cine_lib.volume_array_xyz(cine.browser.GetProxyNode(cine.sequence))
    np.testing.assert_array_equal(proxy_xyz, itk[7].T.astype(proxy_xyz.dtype))


def test_export_keeps_every_voxel_position(ctx, sample_cine, tmp_path):
    cine = cine_lib.load_cine_file(ctx, sample_cine)
    data, affine = scenarios.check_export_roundtrip(cine, tmp_path / "cine.nii.gz")
    assert data.shape == (154, 224, 7, 12)
    # independent reader: ITK (as Slicer) on the exported file, every voxel centre in RAS
    ras_itk = scenarios.voxel_ras_grid(itk_affine_ras(tmp_path / "cine.nii.gz"), data.shape[:3])
    ras_scene = scenarios.voxel_ras_grid(cine_lib.ijk_to_ras(cine.proxy), data.shape[:3])
    assert np.abs(ras_itk - ras_scene).max() < 1e-3


def test_export_of_oblique_time_indexed_cine(ctx, tmp_path):
    """A sequence made in the scene (oblique grid, trigger times) survives export too."""
    from nimosef_engine.io.nifti import load_nifti

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 900, size=(9, 8, 5, 4)).astype(np.int16)
    theta = np.deg2rad(25)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0],
                    [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.25, 1.25, 8.0])
    affine[:3, 3] = [-30.5, 12.25, 80.0]
    cine = cine_lib.add_cine(ctx, frames, affine, "oblique", np.array([0, 40, 80, 120.0]))
    assert cine.sequence.GetIndexUnit() == "ms"
    assert cine_lib.sequence_frame_time_ms(cine.sequence) == pytest.approx(40.0)
    path = cine_lib.export_cine_to_nifti(cine.sequence, tmp_path / "oblique.nii.gz")
    data, affine_read = load_nifti(path, ndim=4, dtype=np.int16)
    np.testing.assert_array_equal(data, frames)
    np.testing.assert_allclose(affine_read, affine, atol=1e-5)
    np.testing.assert_allclose(itk_affine_ras(path), affine, atol=1e-4)


def test_find_cine_from_volume_sequence_or_browser(ctx, sample_cine):
    cine = cine_lib.load_cine_file(ctx, sample_cine)
    for node in (cine.proxy, cine.sequence, cine.browser):
        found = cine_lib.find_cine(ctx, node)
        assert found.sequence is cine.sequence and found.browser is cine.browser


def test_find_cine_rejects_lone_volume(ctx):
    volume = ctx.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "lone")
    with pytest.raises(ValueError, match="single volume"):
        cine_lib.find_cine(ctx, volume)
    with pytest.raises(ValueError, match="select an input"):
        cine_lib.find_cine(ctx, None)


def test_load_rejects_single_frame(ctx, acdc_090):
    from nimosef_engine.core.errors import NimosefInputError

    with pytest.raises(NimosefInputError, match="patient090_frame04"):
        cine_lib.load_cine_file(ctx, acdc_090 / "patient090_frame04.nii.gz")
