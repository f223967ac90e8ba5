"""``nimosef metrics`` on real ACDC ground truth (patient001 ED and ES) and a shifted copy."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nimosef_engine.cli import main

ACDC = Path(__file__).resolve().parents[2] / "data" / "acdc" / "patient001"
FRAMES = ("patient001_frame01_gt.nii.gz", "patient001_frame12_gt.nii.gz")
ACDC_TO_NIMOSEF = np.array([0, 3, 2, 1], np.uint8)  # ACDC 1 RV, 2 MYO, 3 LV
VOXEL_MM3 = 1.5625 * 1.5625 * 10.0  # true spacing is in pixdim; the sform says 1 mm

pytestmark = pytest.mark.skipif(not (ACDC / FRAMES[0]).exists(), reason="ACDC test data missing")


def shifted(labels: np.ndarray, axis: int) -> np.ndarray:
    """Labels moved one voxel towards +axis, zero-filled (nothing leaves the grid here)."""
    out = np.zeros_like(labels)
    src = [slice(None)] * labels.ndim
    dst = [slice(None)] * labels.ndim
    src[axis], dst[axis] = slice(0, -1), slice(1, None)
    out[tuple(dst)] = labels[tuple(src)]
    return out


def write_like_acdc(path: Path, data: np.ndarray, ref: nib.Nifti1Image) -> None:
    """Save with the ACDC header (unit-scale sform, true pixdim): the geometry trap."""
    nib.save(nib.Nifti1Image(data, ref.affine, header=ref.header), str(path))


@pytest.fixture(scope="module")
def acdc_gt() -> tuple[np.ndarray, nib.Nifti1Image]:
    imgs = [nib.load(str(ACDC / f)) for f in FRAMES]
    gt = np.stack([ACDC_TO_NIMOSEF[np.asarray(i.dataobj).astype(np.uint8)] for i in imgs], -1)
    return gt, imgs[0]


@pytest.fixture()
def pred_dir(tmp_path, acdc_gt) -> Path:
    gt, ref = acdc_gt
    d = tmp_path / "generated"
    d.mkdir()
    for sid, axis, cycle_ms in (("sub-001", 0, None), ("sub-002", 1, 900.0)):
        write_like_acdc(d / f"{sid}_seg_gt.nii.gz", gt, ref)
        write_like_acdc(d / f"{sid}_seg.nii.gz", shifted(gt, axis), ref)
        (d / f"{sid}_frames.json").write_text(json.dumps(
            {"frame_times": [0.0, 11 / 30], "frame_indices": [0, 11], "n_frames_cycle": 30,
             "ed_index": 0, "es_index": 1, "cycle_ms": cycle_ms}))
    return d


def test_metrics_cli_on_acdc(pred_dir, acdc_gt):
    gt, _ = acdc_gt
    assert main(["metrics", "--pred-dir", str(pred_dir)]) == 0
    out = pred_dir / "metrics"
    expected = {"summary.csv", "dice_boxplot.png"} | {
        f"{s}{suffix}" for s in ("sub-001", "sub-002")
        for suffix in ("_metrics.csv", "_indices.json")} | {
        f"volume_curves_{s}.png" for s in ("sub-001", "sub-002")}
    assert {p.name for p in out.iterdir()} == expected
    assert all((out / name).stat().st_size > 0 for name in expected)
    assert not list(pred_dir.glob(".metrics.*"))

    for sid, axis in (("sub-001", 0), ("sub-002", 1)):
        pred = shifted(gt, axis)
        table = pd.read_csv(out / f"{sid}_metrics.csv")
        assert list(table.columns) == ["frame", "time", "class", "dice", "hd95", "hausdorff",
                                       "chamfer", "vol_pred_mL", "vol_gt_mL"]
        assert len(table) == 6 and sorted(set(table["frame"])) == [0, 11]
        for t, frame in enumerate((0, 11)):
            for label, name in ((1, "LV"), (2, "MYO"), (3, "RV")):
                row = table[(table["frame"] == frame) & (table["class"] == name)].iloc[0]
                p, g = pred[..., t] == label, gt[..., t] == label
                hand = 2 * np.count_nonzero(p & g) / (np.count_nonzero(p) + np.count_nonzero(g))
                assert row["dice"] == pytest.approx(hand, abs=1e-12)
                assert 0.5 < row["dice"] < 1.0
                assert row["vol_gt_mL"] == pytest.approx(np.count_nonzero(g) * VOXEL_MM3 / 1000)
                assert row["vol_pred_mL"] == pytest.approx(np.count_nonzero(p) * VOXEL_MM3 / 1000)
                # the extreme boundary voxel along the shift is one in-plane voxel off
                assert row["hausdorff"] >= 1.5625 - 1e-9
                assert 0 < row["chamfer"] <= row["hausdorff"]
                assert row["hd95"] <= row["hausdorff"]
        assert table.loc[table["frame"] == 0, "time"].iloc[0] == 0.0

    ind = json.loads((out / "sub-001_indices.json").read_text())
    lv_ed = np.count_nonzero(gt[..., 0] == 1) * VOXEL_MM3 / 1000
    lv_es = np.count_nonzero(gt[..., 1] == 1) * VOXEL_MM3 / 1000
    myo_ed = np.count_nonzero(gt[..., 0] == 2) * VOXEL_MM3 / 1000
    assert ind["gt"]["LV_EDV_mL"] == pytest.approx(lv_ed)
    assert ind["gt"]["LV_ESV_mL"] == pytest.approx(lv_es)
    assert ind["gt"]["LV_EF_pct"] == pytest.approx(100 * (lv_ed - lv_es) / lv_ed)
    assert ind["gt"]["MYO_mass_g"] == pytest.approx(1.05 * myo_ed)
    assert ind["error"]["LV_EF_pct"] == pytest.approx(0.0)  # a shift keeps every volume
    assert ind["gt"]["LV_max_dVdt_mL_per_s"] is None  # cycle length unknown
    ind2 = json.loads((out / "sub-002_indices.json").read_text())
    rate = (lv_ed - lv_es) / (11 / 30)
    assert ind2["pred"]["LV_max_dVdt_mL_per_cycle"] == pytest.approx(rate)
    assert ind2["pred"]["LV_max_dVdt_mL_per_s"] == pytest.approx(rate / 0.9)

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["subject"]) == ["sub-001", "sub-002"]
    lv_rows = table[table["class"] == "LV"]
    assert summary.loc[1, "dice_LV"] == pytest.approx(lv_rows["dice"].mean())
    assert summary.loc[0, "LV_EF_pct_gt"] == pytest.approx(ind["gt"]["LV_EF_pct"])
    assert summary.loc[0, "LV_EF_err_pct"] == pytest.approx(0.0)


def test_metrics_cli_subject_selection_and_out(pred_dir, tmp_path):
    out = tmp_path / "scores"
    assert main(["metrics", "--pred-dir", str(pred_dir), "--subjects", "sub-002",
                 "--out", str(out)]) == 0
    assert pd.read_csv(out / "summary.csv")["subject"].tolist() == ["sub-002"]
    assert not (out / "sub-001_metrics.csv").exists()
    assert not (pred_dir / "metrics").exists()


@pytest.mark.parametrize("damage, culprit", [
    ("no_frames", "sub-002_frames.json"),
    ("cropped_pred", "sub-002_seg.nii.gz"),
    ("bad_times", "sub-002_frames.json"),
    ("unknown_subject", "sub-009_seg_gt.nii.gz"),
])
def test_metrics_cli_bad_input_leaves_nothing(pred_dir, acdc_gt, capsys, damage, culprit):
    gt, ref = acdc_gt
    args = ["metrics", "--pred-dir", str(pred_dir)]
    if damage == "no_frames":
        (pred_dir / "sub-002_frames.json").unlink()
    elif damage == "cropped_pred":
        write_like_acdc(pred_dir / "sub-002_seg.nii.gz", gt[:-1], ref)
    elif damage == "bad_times":
        (pred_dir / "sub-002_frames.json").write_text(json.dumps({"frame_times": [0.0]}))
    else:
        args += ["--subjects", "sub-001", "sub-009"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert culprit in err and len(err.splitlines()) == 1
    assert not (pred_dir / "metrics").exists()
    assert not list(pred_dir.glob(".metrics*"))
