"""Dense motion on real ACDC pairs (tests/data/acdc): the fields' files, their geometry and
convention in SimpleITK, the inverse, folding, tracking against the expert labels, strain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nimosef_engine.core.geometry import heart_frame_from_labels
from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.data.subject import SubjectData
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.motion.fields import (
    composition_error_mm,
    exp_velocity,
    folding_share,
    invert_field,
    label_box,
    read_itk_field_ras,
    register_labels,
    write_itk_field,
)
from nimosef_engine.motion.strain import myocardial_geometry, strain_rows
from nimosef_engine.pipeline.evaluate import tracking_scores

ACDC = Path(__file__).resolve().parents[2] / "data" / "acdc"
PAIRS = {"patient001": (1, 12), "patient080": (1, 10)}  # DCM, NOR (Info.cfg)


def _pair(pid: str):
    ed, es = PAIRS[pid]
    paths = [ACDC / pid / f"{pid}_frame{n:02d}_gt.nii.gz" for n in (ed, es)]
    (a, aff), (b, _) = (load_nifti(p, ndim=3, dtype=np.uint8) for p in paths)
    return remap_acdc_labels(a), remap_acdc_labels(b), aff, paths


def _grid(labels: np.ndarray, aff: np.ndarray) -> SubjectData:
    """The whole input grid as a 'crop' (offset 0)."""
    return SubjectData("s", np.zeros((1, *labels.shape), np.float32), np.zeros(1, np.float32),
                       aff, heart_frame_from_labels(labels, aff), source_shape=labels.shape,
                       source_affine_ras=aff)


@pytest.fixture(scope="module", params=sorted(PAIRS))
def tracked(request, tmp_path_factory):
    """ED -> ES of a real pair by :func:`register_labels` on its labels, written as files."""
    pid = request.param
    ed, es, aff, paths = _pair(pid)
    v, w = register_labels(ed, es, aff)
    box = label_box([ed, es], aff, 12.0)
    u, its = invert_field(v, exp_velocity(torch.from_numpy(-w)).numpy(), box=box)
    out = tmp_path_factory.mktemp(pid)
    sd = _grid(ed, aff)
    write_itk_field(out / "to_ed.nii.gz", v, sd)
    write_itk_field(out / "from_ed.nii.gz", u, sd)
    return {"pid": pid, "ed": ed, "es": es, "aff": aff, "paths": paths, "v": v, "u": u,
            "out": out, "sd": sd}


def test_fields_have_the_input_geometry_in_simpleitk(tracked):
    ref = sitk.ReadImage(str(tracked["paths"][1]))  # ITK reads ACDC's spacing from pixdim
    for name in ("to_ed.nii.gz", "from_ed.nii.gz"):
        img = sitk.ReadImage(str(tracked["out"] / name), sitk.sitkVectorFloat64)
        assert img.GetSize() == ref.GetSize() and img.GetNumberOfComponentsPerPixel() == 3
        np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), rtol=1e-5)
        np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-5)
        arr, aff = read_itk_field_ras(tracked["out"] / name)
        np.testing.assert_allclose(aff, tracked["aff"], atol=1e-4)


def test_displacement_transform_maps_es_points_to_their_ed_position(tracked):
    """The file read as ITK applies it (LPS): a point of the ES grid goes where the field
    in RAS says."""
    tx = sitk.DisplacementFieldTransform(
        sitk.ReadImage(str(tracked["out"] / "to_ed.nii.gz"), sitk.sitkVectorFloat64))
    v_ras, aff = read_itk_field_ras(tracked["out"] / "to_ed.nii.gz")
    ijk = np.argwhere(tracked["es"] > 0)[::50]
    for i, j, k in ijk:
        p_ras = aff[:3, :3] @ (i, j, k) + aff[:3, 3]
        q = np.asarray(tx.TransformPoint(tuple(p_ras * [-1, -1, 1])))
        np.testing.assert_allclose(q * [-1, -1, 1], p_ras + v_ras[i, j, k], atol=1e-3)
    assert np.abs(v_ras[tracked["es"] > 0]).max() > 2.0  # it moves the heart


def test_ed_labels_carried_to_es_beat_the_identity(tracked):
    s = tracking_scores(tracked["out"] / "to_ed.nii.gz", *tracked["paths"])
    assert s["track_dice_mean"] > s["identity_dice_mean"] + 0.1, s
    assert s["track_dice_LV"] > 0.85 and s["track_folding_pct"] < 0.5, s


def test_inverse_composes_to_identity_and_nothing_folds(tracked):
    ed_heart, es_heart = tracked["ed"] > 0, tracked["es"] > 0
    err = composition_error_mm(tracked["u"], tracked["v"], tracked["aff"], ed_heart)
    assert err["mean_mm"] < 0.5, err
    # a negated field is not an inverse: it composes far worse
    neg = composition_error_mm(-tracked["v"], tracked["v"], tracked["aff"], ed_heart)
    assert neg["mean_mm"] > 2 * err["mean_mm"], (neg, err)
    assert folding_share(tracked["v"], es_heart) < 0.005
    assert folding_share(tracked["u"], ed_heart) < 0.005


def _global_strain(pid: str) -> tuple[dict, set]:
    ed, es, aff, _ = _pair(pid)
    v, w = register_labels(ed, es, aff)
    u, _ = invert_field(v, exp_velocity(torch.from_numpy(-w)).numpy(),
                        box=label_box([ed, es], aff, 12.0))
    geo = myocardial_geometry(ed, aff, heart_frame_from_labels(ed, aff))
    zero = strain_rows(np.zeros_like(u), aff, geo, 0, 0.0)
    assert all(abs(r["circumferential_pct"]) < 1e-9 for r in zero)
    rows = {r["segment"]: r for r in strain_rows(u, aff, geo, 1, 0.4)}
    return rows["global"], set(np.unique(geo.segment).tolist())


def test_strain_signs_and_separation_normal_against_dilated():
    """ED -> ES of a normal heart (patient080): circumferential shortening, radial thickening;
    a dilated cardiomyopathy (patient001) shortens far less."""
    nor, segs = _global_strain("patient080")
    assert set(range(1, 17)) <= segs  # every AHA segment has myocardium
    assert -40.0 < nor["circumferential_pct"] < -3.0, nor
    assert nor["radial_pct"] > 10.0, nor
    dcm, _ = _global_strain("patient001")
    assert abs(dcm["circumferential_pct"]) < 0.5 * abs(nor["circumferential_pct"]), (dcm, nor)
    assert dcm["radial_pct"] < nor["radial_pct"], (dcm, nor)


def test_jacobian_of_a_field_file_is_right_on_an_oblique_grid(tmp_path):
    """A linear field u(x) = A x (LPS mm) on a grid turned 40 degrees in-plane and tilted:
    det(I + A) everywhere, where SimpleITK's own filter (image axes taken as physical ones)
    is off."""
    from nimosef_engine.motion.fields import field_file_jacobian_det

    a = np.array([[0.3, 0.2, 0.0], [-0.1, -0.4, 0.1], [0.05, 0.0, 0.2]])
    size, spacing = (20, 22, 8), (1.5, 1.5, 10.0)
    th, tilt = np.deg2rad(40), 0.5
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]]) @ \
        np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    origin = np.array([3.0, -2.0, 5.0])
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1)
    phys = origin + (idx * spacing) @ rot.T
    img = sitk.GetImageFromArray((phys @ a.T).transpose(2, 1, 0, 3), isVector=True)
    img.SetSpacing(spacing)
    img.SetDirection(rot.flatten().tolist())
    img.SetOrigin(origin.tolist())
    path = tmp_path / "field.nii.gz"
    sitk.WriteImage(sitk.Cast(img, sitk.sitkVectorFloat64), str(path))
    det = field_file_jacobian_det(path)
    assert det.shape == size
    np.testing.assert_allclose(det, np.linalg.det(np.eye(3) + a), rtol=1e-6)
    itk_det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(img))
    assert abs(itk_det.mean() - np.linalg.det(np.eye(3) + a)) > 0.1  # why it is not used
