"""BIDS-like layout: 4D cine + 4D segmentation, optional ITK heart transform and ROI crop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from preprocess_testdata import acdc_file

from nimosef_engine.cli import main
from nimosef_engine.core.geometry import HeartFrame, crop_affine, voxel_to_ras
from nimosef_engine.data import bids
from nimosef_engine.data.manifest import implicit_dir, load_dataset_manifest, subject_npz_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.io.nifti import load_nifti, save_nifti

F = np.diag([-1.0, -1.0, 1.0])


def _preprocess(root, *extra) -> int:
    return main(["preprocess", "--layout", "bids", "--root", str(root), "--progress", "none",
                 *extra])


def _write_tfm(path, heart: HeartFrame) -> None:
    """ITK world(LPS) -> heart-frame mm transform of ``heart``, with a non-zero centre."""
    a = heart.rotation.T @ F          # heart = a @ lps + b
    b = -heart.rotation.T @ heart.origin_ras
    centre = np.array([10.0, -20.0, 30.0])
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(a.ravel().tolist())
    tx.SetCenter(centre.tolist())
    tx.SetTranslation((b - centre + a @ centre).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteTransform(tx, str(path))


def test_bids_preprocess_defaults_to_root(bids_root):
    assert _preprocess(bids_root) == 0
    manifest = load_dataset_manifest(bids_root)
    assert manifest["dataset"] == "bids" and manifest["subjects"] == ["sub-001", "sub-080"]
    assert manifest["groups"] == {"sub-001": "DCM", "sub-080": "NOR"}
    subject = SubjectData.load(subject_npz_path(bids_root, "sub-001"))
    assert subject.intensity.shape == (2, 102, 102, 10)
    np.testing.assert_allclose(subject.frame_times, [0.0, 0.5])  # k / T, ED = frame 0
    assert subject.frame_indices.tolist() == [0, 1] and subject.n_frames_cycle == 2
    gt_es, affine = load_nifti(acdc_file("patient001", 12, gt=True))
    np.testing.assert_allclose(subject.source_affine_ras, affine)
    assert (subject.labels[1] == 1).sum() == (gt_es == 3).sum()
    assert (subject.labels[1] == 3).sum() == (gt_es == 1).sum()
    # same subject through the ACDC layout gives the same heart frame and crop
    gt_ed, _ = load_nifti(acdc_file("patient001", 1, gt=True))
    lv = voxel_to_ras(affine, np.argwhere(gt_ed == 3)).mean(0)
    np.testing.assert_allclose(subject.heart.origin_ras, lv)
    assert subject.crop_offset == (45, 82, 0)
    record = json.loads((implicit_dir(bids_root) / "sub-001" / "sub-001_transform.json")
                        .read_text())
    assert record["heart_source"] == "labels" and record["roi_source"] == "roi_mm"
    # source derivatives are untouched and nothing else is left in derivatives/
    assert sorted(p.name for p in (bids_root / "derivatives").iterdir()) == [
        "implicit", "manifests_nimosef", "sa_segmentation"]


def test_itk_heart_transform_lps_to_ras(bids_root):
    """A .tfm (world LPS -> heart mm) defines the heart frame; RAS conversion is exact."""
    assert _preprocess(bids_root, "--subjects", "sub-001") == 0
    base = SubjectData.load(subject_npz_path(bids_root, "sub-001")).heart
    angle = np.deg2rad(30.0)
    spin = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                     [0, 0, 1]])
    target = HeartFrame(base.origin_ras + [5.0, -3.0, 2.0], base.rotation @ spin)
    path = bids.tfm_path(bids_root, "sub-001")
    _write_tfm(path, target)
    read = bids.read_heart_transform(path)
    np.testing.assert_allclose(read.rotation, target.rotation, atol=1e-9)
    np.testing.assert_allclose(read.origin_ras, target.origin_ras, atol=1e-6)
    # an LPS point through SimpleITK equals the RAS point through the heart frame
    ras = np.array([-120.0, -180.0, 40.0])
    itk_heart = sitk.ReadTransform(str(path)).TransformPoint((F @ ras).tolist())
    np.testing.assert_allclose(read.ras_to_heart_mm(ras), itk_heart, atol=1e-6)

    assert _preprocess(bids_root, "--subjects", "sub-001", "--norm-scale-mm", "80") == 0
    subject = SubjectData.load(subject_npz_path(bids_root, "sub-001"))
    np.testing.assert_allclose(subject.heart.rotation, target.rotation, atol=1e-9)
    np.testing.assert_allclose(subject.heart.origin_ras, target.origin_ras, atol=1e-6)
    assert subject.heart.scale_mm == 80.0
    record = json.loads((implicit_dir(bids_root) / "sub-001" / "sub-001_transform.json")
                        .read_text())
    assert record["heart_source"] == "tfm"


def test_scaling_tfm_rejected(bids_root, capsys):
    path = bids.tfm_path(bids_root, "sub-080")
    path.parent.mkdir(parents=True)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([2.0, 0, 0, 0, 1, 0, 0, 0, 1])
    sitk.WriteTransform(tx, str(path))
    assert _preprocess(bids_root) == 2
    err = capsys.readouterr().err
    assert "sa_axis_transform.tfm" in err and "not a rotation" in err


def test_roi_crop_grid(bids_root, capsys):
    cine, affine = load_nifti(bids.cine_path(bids_root, "sub-080"))
    off, shape = (40, 60, 1), (110, 100, 4)
    roi = cine[off[0]:off[0] + shape[0], off[1]:off[1] + shape[1], off[2]:off[2] + shape[2]]
    save_nifti(bids.roi_path(bids_root, "sub-080"), roi, crop_affine(affine, off))
    assert _preprocess(bids_root) == 0
    subject = SubjectData.load(subject_npz_path(bids_root, "sub-080"))
    assert subject.crop_offset == off and subject.grid_shape == shape
    np.testing.assert_allclose(subject.crop_affine_ras, crop_affine(affine, off))
    lo, hi = subject.intensity_range
    np.testing.assert_allclose(subject.intensity, np.clip((np.moveaxis(roi, -1, 0) - lo) /
                                                          (hi - lo), 0, 1), atol=1e-6)
    # an ROI half a voxel off the cine grid is refused, naming the ROI file
    shifted = crop_affine(affine, (40.5, 60, 1))
    save_nifti(bids.roi_path(bids_root, "sub-080"), roi, shifted)
    assert _preprocess(bids_root) == 2
    err = capsys.readouterr().err
    assert "sub-080_sa.nii.gz" in err and "not on the cine's voxel grid" in err


def test_cli_rejects_bad_arguments(bids_root, capsys):
    assert _preprocess(bids_root, "--fractions", "0.5", "0.5", "0.5") == 2
    assert "--fractions" in capsys.readouterr().err
    assert _preprocess(bids_root, "--holdout", "sub-999") == 2
    assert "--holdout" in capsys.readouterr().err
    assert _preprocess(bids_root, "--subjects", "sub-042") == 2
    assert "--subjects" in capsys.readouterr().err
    assert not (bids_root / "derivatives" / "implicit").exists()
    with pytest.raises(SystemExit):
        _preprocess(bids_root, "--layout", "nifti")
