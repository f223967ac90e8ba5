"""Metrics on small arrays with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from nimosef_engine.evaluation.metrics import (
    boundary_points_mm,
    cardiac_indices,
    dice,
    dice_per_class,
    indices_from_metrics,
    point_set_distances,
    subject_metrics,
    surface_distances,
    volumes_ml,
)
from nimosef_engine.evaluation.plots import plot_dice_boxplot, plot_volume_curves

ANISO = np.diag([0.5, 2.0, 3.0, 1.0])


def rotated_affine(spacing, origin=(10.0, -20.0, 5.0)) -> np.ndarray:
    """Voxel -> RAS with a 30 degree rotation about z, a flip of j and the given spacing."""
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([1.0, -1.0, 1.0])
    a = np.eye(4)
    a[:3, :3] = rot * np.asarray(spacing, float)
    a[:3, 3] = origin
    return a


def test_dice_two_boxes_exact():
    pred = np.zeros((10, 10, 4), np.uint8)
    gt = np.zeros_like(pred)
    pred[0:4, 0:4, 0:2] = 1  # 32 voxels
    gt[2:6, 0:4, 0:2] = 1  # 32 voxels, overlap i=2..3 -> 16
    gt[7:9, 7:9, 0:1] = 3  # RV only in gt -> Dice 0
    assert dice(pred, gt, 1) == pytest.approx(2 * 16 / 64)
    assert dice(pred, pred, 1) == 1.0
    per = dice_per_class(pred, gt)
    assert per[1] == pytest.approx(0.5)
    assert math.isnan(per[2])
    assert per[3] == 0.0


def test_boundary_points_of_box_are_its_surface_in_mm():
    mask = np.zeros((6, 6, 6), bool)
    mask[1:5, 1:5, 1:5] = True  # 4^3 = 64, interior 2^3 = 8
    pts = boundary_points_mm(mask, ANISO)
    assert pts.shape == (56, 3)
    assert pts[:, 0].min() == pytest.approx(0.5) and pts[:, 0].max() == pytest.approx(2.0)
    assert pts[:, 2].min() == pytest.approx(3.0) and pts[:, 2].max() == pytest.approx(12.0)
    # a mask touching the grid edge: its edge voxels count as boundary
    full = np.ones((3, 3, 3), bool)
    assert len(boundary_points_mm(full, ANISO)) == 26


def test_plate_shifted_along_its_thin_axis_rotated_anisotropic_affine():
    affine = rotated_affine((2.5, 1.0, 1.2))
    a = np.zeros((6, 8, 8), bool)
    a[2, 1:7, 1:7] = True
    b = np.roll(a, 1, axis=0)  # every point of one plate is 2.5 mm from the other plate
    d = surface_distances(a, b, affine)
    assert d["hausdorff"] == pytest.approx(2.5)
    assert d["hd95"] == pytest.approx(2.5)
    assert d["chamfer"] == pytest.approx(2.5)
    assert surface_distances(a, a, affine)["hausdorff"] == 0.0


def test_line_inside_longer_line_exact_hd95_and_chamfer():
    # A = voxels j=0..9, B = j=0..19 along the 2 mm axis: d_ab = 0 (10 values),
    # d_ba = 0 (10 values) and 2, 4, ..., 20 mm (10 values).
    a = np.zeros((3, 22, 3), bool)
    b = np.zeros_like(a)
    a[1, 0:10, 1] = True
    b[1, 0:20, 1] = True
    d = surface_distances(a, b, ANISO)
    assert d["hausdorff"] == pytest.approx(20.0)
    # pooled sorted: 20 zeros then 2..20; rank 0.95 * 29 = 27.55 -> 16 + 0.55 * 2
    assert d["hd95"] == pytest.approx(17.1)
    assert d["chamfer"] == pytest.approx(0.5 * (0.0 + 110.0 / 20))


def test_point_set_distances_match_brute_force():
    rng = np.random.default_rng(0)
    pa, pb = rng.normal(size=(40, 3)) * [1, 2, 5], rng.normal(size=(25, 3)) + 1
    full = cdist(pa, pb)
    d_ab, d_ba = full.min(1), full.min(0)
    d = point_set_distances(pa, pb)
    assert d["hausdorff"] == pytest.approx(max(d_ab.max(), d_ba.max()))
    assert d["chamfer"] == pytest.approx(0.5 * (d_ab.mean() + d_ba.mean()))
    assert d["hd95"] == pytest.approx(np.percentile(np.r_[d_ab, d_ba], 95))


def test_empty_masks_give_nan():
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    b[1, 1, 1] = True
    assert all(math.isnan(v) for v in surface_distances(a, b, ANISO).values())
    assert math.isnan(dice(a, a, 1))


def test_volumes_anisotropic_and_flipped_affine():
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[0:2, 0:3, 0:1] = 1  # 6 voxels
    labels[3, :, :] = 2  # 25 voxels
    labels[4, 0, 0] = 3  # 1 voxel
    vol = volumes_ml(labels, ANISO)  # voxel = 3 mm^3
    assert vol == pytest.approx({"LV": 0.018, "MYO": 0.075, "RV": 0.003})
    flipped = np.diag([-1.5625, -1.5625, 10.0, 1.0])
    flipped[:3, 3] = [100.0, 50.0, -30.0]
    assert volumes_ml(labels, flipped)["LV"] == pytest.approx(6 * 1.5625**2 * 10 / 1000)
    assert volumes_ml(labels, rotated_affine((2.5, 1.0, 1.2)))["MYO"] == pytest.approx(
        25 * 3.0 / 1000)


def test_cardiac_indices_from_known_curve():
    lv = [150.0, 120.0, 60.0, 90.0, 140.0]  # ED frame 0, ES frame 2
    rv = [160.0, 130.0, 80.0, 100.0, 150.0]
    myo = [100.0, 101.0, 99.0, 100.0, 100.0]
    ind = cardiac_indices(lv, rv, myo, frame_times=[0.0, 0.2, 0.4, 0.6, 0.8], cycle_ms=800.0)
    assert (ind["ed_index"], ind["es_index"]) == (0, 2)
    assert ind["LV_EDV_mL"] == 150.0 and ind["LV_ESV_mL"] == 60.0
    assert ind["LV_SV_mL"] == 90.0 and ind["LV_EF_pct"] == pytest.approx(60.0)
    assert ind["RV_SV_mL"] == 80.0 and ind["RV_EF_pct"] == pytest.approx(50.0)
    assert ind["MYO_mass_g"] == pytest.approx(105.0)
    # steepest step: 120 -> 60 over 0.2 of the cycle = 300 mL/cycle; 800 ms -> 375 mL/s
    assert ind["LV_max_dVdt_mL_per_cycle"] == pytest.approx(300.0)
    assert ind["LV_max_dVdt_mL_per_s"] == pytest.approx(375.0)
    forced = cardiac_indices(lv, rv, myo, ed_index=4, es_index=3)
    assert forced["LV_SV_mL"] == 50.0 and forced["MYO_mass_g"] == pytest.approx(105.0)
    assert math.isnan(forced["LV_max_dVdt_mL_per_s"])
    # wrap-around interval counts: 2 frames at t=0 and 0.25 -> rates 40/0.25 and 40/0.75
    two = cardiac_indices([100.0, 60.0], [1.0, 1.0], [1.0, 1.0], frame_times=[0.0, 0.25])
    assert two["LV_max_dVdt_mL_per_cycle"] == pytest.approx(160.0)


def test_subject_metrics_table_and_plots(tmp_path):
    gt = np.zeros((8, 8, 3, 2), np.uint8)
    gt[1:5, 1:5, :, 0] = 1
    gt[1:4, 1:4, :, 1] = 1
    gt[6:8, 0:2, :, :] = 3
    pred = gt.copy()
    pred[4, 1:5, :, 0] = 0  # LV ED prediction loses one row of 4x3 voxels
    df = subject_metrics(pred, gt, ANISO, frame_times=[0.0, 0.4], frame_indices=[0, 11])
    assert len(df) == 6 and list(df["frame"]) == [0, 0, 0, 11, 11, 11]
    lv_ed = df[(df["class"] == "LV") & (df["frame"] == 0)].iloc[0]
    assert lv_ed["dice"] == pytest.approx(2 * 36 / (36 + 48))
    assert lv_ed["vol_pred_mL"] == pytest.approx(36 * 3 / 1000)
    assert lv_ed["vol_gt_mL"] == pytest.approx(48 * 3 / 1000)
    assert lv_ed["hausdorff"] == pytest.approx(0.5)  # the lost row lies 1 voxel (0.5 mm) away
    assert df[df["class"] == "MYO"]["dice"].isna().all()
    gt_ind = indices_from_metrics(df, "gt")
    assert gt_ind["LV_EDV_mL"] == pytest.approx(0.144)
    assert gt_ind["LV_ESV_mL"] == pytest.approx(27 * 3 / 1000)
    png = plot_volume_curves(df, tmp_path / "curves.png", title="toy")
    box = plot_dice_boxplot(pd.DataFrame({"dice_LV": [0.9, 0.8], "dice_MYO": [0.7, np.nan],
                                          "dice_RV": [0.85, 0.88]}), tmp_path / "box.png")
    arrays = plot_volume_curves({"LV": [3.0, 2.0], "MYO": [1.0, 1.1], "RV": [2.5, 1.5]},
                                tmp_path / "arrays.png", times=[0.0, 0.4],
                                gt={"LV": [3.1, 2.2], "MYO": [1.0, 1.0], "RV": [2.4, 1.4]})
    wide = plot_volume_curves(pd.DataFrame({"time": [0.0, 0.5], "LV_mL": [3.0, 2.0],
                                            "MYO_mL": [1.0, 1.0], "RV_mL": [2.0, 1.0]}),
                              tmp_path / "wide.png")
    with pytest.raises(ValueError, match="LV_mL"):
        plot_volume_curves(pd.DataFrame({"time": [0.0]}), tmp_path / "bad.png")
    for p in (png, box, arrays, wide):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = sorted(x.name for x in tmp_path.iterdir())
    assert written == ["arrays.png", "box.png", "curves.png", "wide.png"]


def test_surface_distances_on_real_labels_while_subnormals_are_flushed():
    """Commands flush subnormal numbers (core.threads); scipy's KD-tree crashed (segmentation
    fault) on the boundary points of these expert labels under that mode. A fresh process, so
    that a crash fails this test instead of ending the run."""
    import subprocess
    import sys
    from pathlib import Path

    gt = Path(__file__).resolve().parents[2] / "data" / "acdc" / "patient090"
    code = (
        "import numpy as np\n"
        "from nimosef_engine.core.threads import subnormals\n"
        "from nimosef_engine.evaluation.metrics import surface_distances\n"
        "from nimosef_engine.io.nifti import load_nifti\n"
        f"ed, aff = load_nifti({str(gt / 'patient090_frame04_gt.nii.gz')!r}, ndim=3)\n"
        f"es, _ = load_nifti({str(gt / 'patient090_frame11_gt.nii.gz')!r}, ndim=3)\n"
        "with subnormals(flush=True):\n"
        "    d = surface_distances(es > 0, ed > 0, aff)\n"
        "print(d['hd95'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    assert 1.0 < float(out.stdout.split()[-1]) < 30.0  # mm: the heart's ED-ES wall motion
