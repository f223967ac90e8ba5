"""ACDC preprocessing of the real test patients: labels, frame times, heart frame, crop."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from preprocess_testdata import ACDC_ROOT, acdc_file, copy_patients

from nimosef_engine.cli import main
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import ras_to_voxel, spacing_of, stack_normal, voxel_to_ras
from nimosef_engine.data.acdc import parse_info_cfg, remap_acdc_labels
from nimosef_engine.data.manifest import implicit_dir, load_dataset_manifest, subject_npz_path
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.io.nifti import load_nifti

ED_ES = {"sub-001": ("patient001", 1, 12), "sub-080": ("patient080", 1, 10),
         "sub-090": ("patient090", 4, 11)}


def _load(acdc_out, sid) -> SubjectData:
    return SubjectData.load(subject_npz_path(acdc_out, sid))


def test_info_cfg_parsed(tmp_path):
    info = parse_info_cfg(ACDC_ROOT / "patient001" / "Info.cfg")
    assert (info.ed, info.es, info.nb_frame, info.group) == (1, 12, 30, "DCM")
    assert (info.height_cm, info.weight_kg) == (184.0, 95.0)
    bad = tmp_path / "Info.cfg"
    bad.write_text("ED: 1\nES: 12\nGroup: DCM\nNbFrame: 30\nWeight: ninety\n")
    with pytest.raises(NimosefInputError, match=r"Info\.cfg.*Weight is not a number"):
        parse_info_cfg(bad)
    bad.write_text("ED: 1\nES: 31\nGroup: DCM\nNbFrame: 30\n")
    with pytest.raises(NimosefInputError, match="ES = 31 is outside"):
        parse_info_cfg(bad)


def test_remap_acdc_labels():
    assert remap_acdc_labels(np.array([0, 1, 2, 3])).tolist() == [0, 3, 2, 1]


@pytest.mark.parametrize("sid", sorted(ED_ES))
def test_label_counts_remapped(acdc_out, sid):
    """NIMOSEF LV/MYO/RV counts in the crop equal ACDC label 3/2/1 counts of the whole file."""
    patient, ed, es = ED_ES[sid]
    subject = _load(acdc_out, sid)
    assert subject.labels.dtype == np.uint8
    for t, frame in enumerate((ed, es)):
        gt, _ = load_nifti(acdc_file(patient, frame, gt=True))
        for nimosef, acdc in ((1, 3), (2, 2), (3, 1)):
            assert (subject.labels[t] == nimosef).sum() == (gt == acdc).sum() > 100


def test_frame_times_and_indices(acdc_out):
    s001 = _load(acdc_out, "sub-001")
    np.testing.assert_allclose(s001.frame_times, [0.0, 11 / 30], atol=1e-6)
    assert s001.frame_indices.tolist() == [0, 11] and s001.n_frames_cycle == 30
    s090 = _load(acdc_out, "sub-090")
    np.testing.assert_allclose(s090.frame_times, [0.0, 7 / 12], atol=1e-6)
    assert s090.frame_indices.tolist() == [3, 10] and s090.n_frames_cycle == 12


@pytest.mark.parametrize("sid", ["sub-001", "sub-090"])
def test_heart_frame_geometry(acdc_out, sid):
    patient, ed, _ = ED_ES[sid]
    gt, affine = load_nifti(acdc_file(patient, ed, gt=True))
    subject = _load(acdc_out, sid)
    heart = subject.heart
    np.testing.assert_allclose(subject.source_affine_ras, affine)
    # origin lies inside the LV blood pool (ACDC label 3) of the ED frame
    vox = np.round(ras_to_voxel(affine, heart.origin_ras[None])[0]).astype(int)
    assert gt[tuple(vox)] == 3
    np.testing.assert_allclose(heart.origin_ras, voxel_to_ras(affine, np.argwhere(gt == 3)).mean(0))
    # x axis points to the RV centroid: it lies on +x, in the x-z plane
    rv = heart.ras_to_heart_mm(voxel_to_ras(affine, np.argwhere(gt == 1)).mean(0))
    assert rv[0] > 20.0 and abs(rv[1]) < 1e-6
    # z is the stack normal, apex -> base; ACDC slice 0 is basal
    np.testing.assert_allclose(abs(heart.rotation[:, 2] @ stack_normal(affine)), 1.0, atol=1e-9)
    centre = np.array(gt.shape) / 2.0
    z_first = heart.ras_to_heart_mm(voxel_to_ras(affine, [[centre[0], centre[1], 0]]))[0, 2]
    z_last = heart.ras_to_heart_mm(voxel_to_ras(affine, [[centre[0], centre[1],
                                                           gt.shape[2] - 1]]))[0, 2]
    assert z_first - z_last == pytest.approx(10.0 * (gt.shape[2] - 1))
    np.testing.assert_allclose(heart.rotation.T @ heart.rotation, np.eye(3), atol=1e-9)
    assert np.linalg.det(heart.rotation) == pytest.approx(1.0)
    assert heart.scale_mm == 100.0


def test_crop_affine_and_intensity(acdc_out):
    subject = _load(acdc_out, "sub-001")
    img, affine = load_nifti(acdc_file("patient001", 12))
    off = np.array(subject.crop_offset)
    # 160 mm at 1.5625 mm -> 102 voxels in-plane, all 10 slices
    assert subject.grid_shape == (102, 102, 10) and subject.source_shape == (216, 256, 10)
    assert off[2] == 0 and np.all(off >= 0) and np.all(off + subject.grid_shape <= img.shape)
    ijk = np.array([[0, 0, 0], [101, 7, 9], [50, 60, 4]])
    np.testing.assert_allclose(voxel_to_ras(subject.crop_affine_ras, ijk),
                               voxel_to_ras(affine, ijk + off), atol=1e-9)
    np.testing.assert_allclose(spacing_of(subject.crop_affine_ras), [1.5625, 1.5625, 10.0])
    # intensity: ES frame, 2nd-98th percentile of the ED+ES volumes, clipped, scaled
    ed_img, _ = load_nifti(acdc_file("patient001", 1))
    lo, hi = np.percentile(np.stack([ed_img, img]), [2, 98])
    assert subject.intensity_range == pytest.approx((lo, hi))
    crop = img[off[0]:off[0] + 102, off[1]:off[1] + 102, :]
    np.testing.assert_allclose(subject.intensity[1], np.clip((crop - lo) / (hi - lo), 0, 1),
                               atol=1e-6)
    assert subject.intensity.dtype == np.float32
    assert subject.intensity.min() >= 0.0 and subject.intensity.max() == 1.0


def test_intensity_range_from_4d_cine(acdc_out, tmp_path):
    cine, _ = load_nifti(ACDC_ROOT / "patient090" / "patient090_4d.nii.gz")
    lo, hi = np.percentile(cine, [2, 98])
    assert _load(acdc_out, "sub-090").intensity_range == pytest.approx((lo, hi))
    # brighten the frames that are not ED/ES: the range follows the whole cine
    root = copy_patients(tmp_path / "acdc", "patient090")
    path = root / "patient090" / "patient090_4d.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    others = [t for t in range(12) if t not in (3, 10)]
    data[..., others] *= 3.0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)
    assert main(["preprocess", "--layout", "acdc", "--root", str(root), "--out",
                 str(tmp_path / "out"), "--progress", "none"]) == 0
    subject = _load(tmp_path / "out", "sub-090")
    lo3, hi3 = np.percentile(data, [2, 98])
    assert hi3 > 1.5 * hi
    assert subject.intensity_range == pytest.approx((lo3, hi3))
    ed, _ = load_nifti(acdc_file("patient090", 4))
    off = subject.crop_offset
    crop = ed[off[0]:off[0] + subject.grid_shape[0], off[1]:off[1] + subject.grid_shape[1]]
    np.testing.assert_allclose(subject.intensity[0], np.clip((crop - lo3) / (hi3 - lo3), 0, 1),
                               atol=1e-6)


def test_parquet_and_transform(acdc_out):
    subject = _load(acdc_out, "sub-080")
    folder = implicit_dir(acdc_out) / "sub-080"
    table = pd.read_parquet(folder / "sub-080.parquet")
    assert list(table.columns) == ["i", "j", "k", "x", "y", "z", "int_t0", "int_t1",
                                   "seg_t0", "seg_t1"]
    assert len(table) == int(np.prod(subject.grid_shape))
    row = table.iloc[12345]
    ijk = np.array([row.i, row.j, row.k]).astype(int)
    crop_ijk = ijk - np.array(subject.crop_offset)
    ras = voxel_to_ras(subject.source_affine_ras, ijk[None])
    np.testing.assert_allclose([row.x, row.y, row.z], subject.heart.ras_to_heart_mm(ras)[0],
                               atol=1e-3)
    assert row.int_t1 == pytest.approx(float(subject.intensity[(1, *crop_ijk)]))
    assert row.seg_t0 == subject.labels[(0, *crop_ijk)]
    record = json.loads((folder / "sub-080_transform.json").read_text())
    assert record["heart_source"] == "labels" and record["roi_source"] == "roi_mm"
    np.testing.assert_allclose(record["crop_affine_ras"], subject.crop_affine_ras)
    np.testing.assert_allclose(np.array(record["crop_voxel_to_norm"]) @ [*crop_ijk, 1],
                               [*subject.heart.ras_to_norm(ras)[0], 1], atol=1e-9)


def test_dataset_manifest(acdc_out):
    manifest = load_dataset_manifest(acdc_out)
    assert manifest["dataset"] == "acdc"
    assert manifest["subjects"] == ["sub-001", "sub-080", "sub-090"]
    assert manifest["groups"] == {"sub-001": "DCM", "sub-080": "NOR", "sub-090": "RV"}
    assert manifest["splits"] == {"train": ["sub-001", "sub-080"], "val": [],
                                  "test": ["sub-090"]}
    assert manifest["norm_scale_mm"] == 100.0
    per_subject = [json.loads((acdc_out / "derivatives" / "manifests_nimosef" / f).read_text())
                   for f in manifest["subject_manifests"].values()]
    boxes = np.array([[s["foreground_bbox_mm"]["min"], s["foreground_bbox_mm"]["max"]]
                      for s in per_subject])
    bbox = manifest["population_bbox_mm"]
    np.testing.assert_allclose(bbox["min"], boxes[:, 0].min(0))
    np.testing.assert_allclose(bbox["max"], boxes[:, 1].max(0))
    # the LV centre is the origin, so the box straddles it; the long axis spans slices
    assert np.all(np.array(bbox["min"]) < 0) and np.all(np.array(bbox["max"]) > 0)
    assert per_subject[0]["info"]["ES"] == 12 and per_subject[0]["group"] == "DCM"
