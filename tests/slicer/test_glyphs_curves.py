"""Displacement arrows per frame, and the volume table, chart and CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from NimosefSlicerLib import curves, glyphs, segments
from NimosefSlicerLib.cine import ijk_to_ras


def test_one_arrow_has_the_displacement_length_and_magnitude():
    p = np.array([[10.0, -20.0, 30.0]])
    v = np.array([[3.0, 4.0, 0.0]])  # |v| = 5 mm
    poly = glyphs.displacement_glyphs(p, v, scale=1.0)
    pts = np.array([poly.GetPoint(i) for i in range(poly.GetNumberOfPoints())])
    along = (pts - p) @ (v[0] / 5.0)
    assert along.min() == pytest.approx(0.0, abs=1e-6)
    assert along.max() == pytest.approx(5.0, abs=1e-4)  # tip at p + v
    np.testing.assert_allclose(glyphs.glyph_magnitudes(poly), 5.0)


def test_glyph_sequence_per_frame_follows_the_motion(gt_scene):
    cine, sequence, motion = gt_scene["cine"], gt_scene["glyphs"], gt_scene["motion"]
    assert sequence.GetNumberOfDataNodes() == 2
    assert cine.browser.IsSynchronizedSequenceNode(sequence.GetID(), True)
    per_arrow = glyphs.displacement_glyphs(np.zeros((1, 3)), np.ones((1, 3))).GetNumberOfPoints()
    points_es, vectors_es = motion[1]
    keep = glyphs.subsample_indices(len(points_es))
    cine.browser.SetSelectedItemNumber(1)
    proxy = cine.browser.GetProxyNode(sequence)
    poly = proxy.GetPolyData()
    assert poly.GetNumberOfPoints() == len(keep) * per_arrow
    mags = glyphs.glyph_magnitudes(poly)
    np.testing.assert_allclose(mags.max(), np.linalg.norm(vectors_es[keep], axis=1).max())
    # the real ED -> ES myocardial motion of patient090 is millimetres, not zero
    assert 1.0 < np.median(np.linalg.norm(vectors_es, axis=1)) < 20.0
    display = proxy.GetDisplayNode()
    assert display.GetScalarVisibility() and display.GetActiveScalarName() == "displacement_mm"
    cine.browser.SetSelectedItemNumber(0)
    assert glyphs.glyph_magnitudes(cine.browser.GetProxyNode(sequence).GetPolyData()).max() == 0


def _expert_volume_curves(gt_scene) -> dict[str, np.ndarray]:
    labels, affine = gt_scene["labels"], gt_scene["affine"]
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    t = np.arange(labels.shape[3])
    out = {"frame": t.astype(float), "time": t / 12.0, "time_ms": t * 70.0}
    for spec in segments.segment_specs():
        out[f"{spec.segment_id}_mL"] = np.array(
            [(labels[..., k] == spec.label).sum() * voxel_ml for k in t])
    return out


def test_volume_table_chart_and_csv(ctx, gt_scene, acdc_090, tmp_path):
    truth = _expert_volume_curves(gt_scene)
    # ED LV volume: the scene's voxel size agrees with ITK's reading of the expert labels
    import SimpleITK as sitk

    gt = sitk.ReadImage(str(acdc_090 / "patient090_frame04_gt.nii.gz"))
    itk_ml = (sitk.GetArrayFromImage(gt) == 3).sum() * np.prod(gt.GetSpacing()) / 1000.0
    assert truth["LV_mL"][0] == pytest.approx(itk_ml, rel=1e-6)
    assert np.prod(np.linalg.norm(ijk_to_ras(gt_scene["cine"].proxy)[:3, :3], axis=0)) == \
        pytest.approx(np.prod(gt.GetSpacing()), rel=1e-6)
    source = tmp_path / "volumes.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(curves.CURVE_COLUMNS)
        for row in zip(*[truth[c] for c in curves.CURVE_COLUMNS], strict=True):
            writer.writerow([f"{v:.6f}" for v in row])
    read = curves.read_volume_curves(source)
    table = curves.add_volume_table(ctx.scene, read, "volumes")
    colors = {f"{s.segment_id}_mL": s.color for s in segments.segment_specs()}
    chart = curves.add_volume_chart(ctx.scene, table, colors, "chart")
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    lv_series = chart.GetNthPlotSeriesNode(0)
    assert lv_series.GetYColumnName() == "LV_mL" and lv_series.GetXColumnName() == "time_ms"
    np.testing.assert_allclose(lv_series.GetColor(), colors["LV_mL"])
    assert table.GetColumnUnitLabel("LV_mL") == "mL"

    out = curves.export_table_csv(table, tmp_path / "export" / "curves")
    assert out.name == "curves.csv" and sorted(p.name for p in out.parent.iterdir()) == \
        ["curves.csv"]
    back = curves.read_volume_curves(out)
    for column in curves.CURVE_COLUMNS:  # kept to 0.01 mL, 0.1 ms, 1e-4 cycle
        tol = 0.5 * 10.0 ** -curves.DECIMALS[column] + 1e-9
        np.testing.assert_allclose(back[column], truth[column], rtol=0, atol=tol)


def test_volume_csv_errors_name_the_file(tmp_path):
    from nimosef_engine.core.errors import NimosefInputError

    bad = tmp_path / "volumes.csv"
    bad.write_text("frame,time,LV_mL\n0,0,1\n")
    with pytest.raises(NimosefInputError, match="volumes.csv.*missing columns"):
        curves.read_volume_curves(bad)
    with pytest.raises(NimosefInputError, match="file not found"):
        curves.read_volume_curves(tmp_path / "absent.csv")
