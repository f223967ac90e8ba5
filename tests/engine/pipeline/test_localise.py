"""Label-free heart localisation on real ACDC cines (tests/data/acdc, see CITATION.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import (
    LV,
    heart_frame_from_labels,
    ras_to_voxel,
    stack_normal,
)
from nimosef_engine.data.acdc import parse_info_cfg, remap_acdc_labels
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.pipeline.localise import HeartPose, localise_heart

ACDC = Path(__file__).resolve().parents[2] / "data" / "acdc"
PATIENTS = ["patient001", "patient080", "patient090"]


def _pair(name: str):
    """ED and ES frames ``(2, X, Y, Z)``, ED labels (NIMOSEF), affine."""
    folder = ACDC / name
    info = parse_info_cfg(folder / "Info.cfg")
    frames = [load_nifti(folder / f"{name}_frame{n:02d}.nii.gz", 3) for n in (info.ed, info.es)]
    gt, _ = load_nifti(folder / f"{name}_frame{info.ed:02d}_gt.nii.gz", 3, dtype=np.uint8)
    return np.stack([f[0] for f in frames]), remap_acdc_labels(gt), frames[0][1]


@pytest.fixture(scope="module")
def pairs():
    return {name: _pair(name) for name in PATIENTS}


def _label_at(labels: np.ndarray, affine: np.ndarray, ras: np.ndarray) -> int:
    ijk = np.round(ras_to_voxel(affine, ras[None])[0]).astype(int)
    assert np.all(ijk >= 0) and np.all(ijk < labels.shape), ijk
    return int(labels[tuple(ijk)])


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b),
                                              -1, 1))))


@pytest.mark.parametrize("name", PATIENTS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lv_centre_and_axes_match_labels(pairs, name, reverse):
    frames, labels, aff = pairs[name]
    pose = localise_heart(frames[::-1] if reverse else frames, aff, source=name)
    ref = heart_frame_from_labels(labels, aff)
    assert isinstance(pose, HeartPose)
    # the LV centre lies in the labelled LV blood pool, a few mm from the label centroid
    assert _label_at(labels, aff, pose.frame.origin_ras) == LV
    assert np.linalg.norm(pose.frame.origin_ras - ref.origin_ras) < 10.0
    # LV -> RV axis and the long-axis sign agree with the labels
    assert _angle_deg(pose.frame.rotation[:, 0], ref.rotation[:, 0]) < 30.0
    assert pose.frame.rotation[:, 2] @ ref.rotation[:, 2] > 0.99
    # ED = the larger LV blood pool, wherever it sits in the cine
    assert pose.ed_index == (1 if reverse else 0)
    # a proper right-handed rotation, z along the stack normal
    rot = pose.frame.rotation
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-9)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    assert abs(rot[:, 2] @ stack_normal(aff)) == pytest.approx(1.0)
    assert 0.5 < pose.confidence <= 1.0
    assert pose.frame.scale_mm == 100.0
    # the heart ROI centre is near the LV (between the LV and the RV)
    assert np.linalg.norm(pose.roi_center_ras - pose.frame.origin_ras) < 60.0


def test_full_cine_patient090():
    folder = ACDC / "patient090"
    data, aff = load_nifti(folder / "patient090_4d.nii.gz", 4)
    frames = np.moveaxis(data, -1, 0)
    assert frames.shape == (12, 154, 224, 7)
    info = parse_info_cfg(folder / "Info.cfg")
    gt, _ = load_nifti(folder / f"patient090_frame{info.ed:02d}_gt.nii.gz", 3, dtype=np.uint8)
    labels = remap_acdc_labels(gt)
    pose = localise_heart(frames, aff, scale_mm=80.0)
    ref = heart_frame_from_labels(labels, aff)
    assert _label_at(labels, aff, pose.frame.origin_ras) == LV
    assert _angle_deg(pose.frame.rotation[:, 0], ref.rotation[:, 0]) < 30.0
    assert pose.frame.scale_mm == 80.0
    # ED (frame 4, index 3) lies on a plateau of LV size: the estimate is within 2 frames,
    # and far from ES (frame 11, index 10)
    ed_dist = min(abs(pose.ed_index - (info.ed - 1)), 12 - abs(pose.ed_index - (info.ed - 1)))
    assert ed_dist <= 2
    assert pose.ed_index != info.es - 1


def test_hints_override(pairs):
    frames, labels, aff = pairs["patient001"]
    auto = localise_heart(frames, aff)
    lv_hint = auto.frame.origin_ras + np.array([3.0, -2.0, 1.0])
    # an RV point at 90 degrees from the detected LV->RV direction, in the slice plane
    y = auto.frame.rotation[:, 1]
    rv_hint = lv_hint + 40.0 * y + 7.0 * auto.frame.rotation[:, 2]
    pose = localise_heart(frames, aff, lv_center_ras=lv_hint, rv_point_ras=rv_hint)
    np.testing.assert_allclose(pose.frame.origin_ras, lv_hint)
    assert _angle_deg(pose.frame.rotation[:, 0], y) < 1e-6
    assert abs(pose.frame.rotation[:, 2] @ auto.frame.rotation[:, 2]) == pytest.approx(1.0)
    assert any("hint" in n for n in pose.notes)
    # an LV hint alone seeds the detector there: the RV direction is still found
    only_lv = localise_heart(frames, aff, lv_center_ras=lv_hint)
    np.testing.assert_allclose(only_lv.frame.origin_ras, lv_hint)
    ref = heart_frame_from_labels(labels, aff)
    assert _angle_deg(only_lv.frame.rotation[:, 0], ref.rotation[:, 0]) < 30.0
    assert only_lv.ed_index == 0
    outside = auto.frame.origin_ras + 1000.0 * auto.frame.rotation[:, 0]
    with pytest.raises(NimosefInputError, match="outside the image"):
        localise_heart(frames, aff, lv_center_ras=outside)


def test_bad_input_raises(pairs):
    frames, _, aff = pairs["patient080"]
    with pytest.raises(NimosefInputError, match="cine.nii.gz.*at least 2 frames"):
        localise_heart(frames[:1], aff, source="cine.nii.gz")
    with pytest.raises(NimosefInputError, match="constant"):
        localise_heart(np.full_like(frames, 7.0), aff)
    bad = frames.copy()
    bad[1, 10, 10, 2] = np.nan
    with pytest.raises(NimosefInputError, match="NaN"):
        localise_heart(bad, aff)
    with pytest.raises(NimosefInputError, match=r"\(T, X, Y, Z\)"):
        localise_heart(frames[0], aff)
    with pytest.raises(NimosefInputError, match="affine"):
        localise_heart(frames, np.zeros((4, 4)))


def test_no_heart_gives_low_confidence(pairs):
    frames, _, aff = pairs["patient080"]
    rng = np.random.default_rng(0)
    noise = rng.random(frames.shape).astype(np.float32)
    assert localise_heart(noise, aff).confidence < 0.3
    static = np.stack([frames[0], frames[0]])
    pose = localise_heart(static, aff)
    assert pose.confidence < 0.3
    assert any("identical" in n for n in pose.notes)
