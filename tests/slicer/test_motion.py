"""The engine's dense motion in the scene (real MRML, slicer-core), on real engine outputs: the
small result shipped with the module (``Resources/TestResult``: 3 frames of ACDC patient090,
ED frame 0) and the session's run on the 12-frame demo cine (``engine_run``).

- a grid transform per frame in the cine's browser, whose transform *to parent* moves an ED
  point ``p`` to ``p + u(p)`` of ``from_ed_NN`` (Slicer's own reader gives the same field as
  the transform *from parent*: the direction is checked against it);
- *Track points*: ED points follow the wall (they land in that frame's myocardium);
- arrows on the ED myocardium's surface (not only at the slices), along ``from_ed``;
- strain curves in a chart and the peak strain per AHA segment as a table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from NimosefSlicerLib import curves, glyphs, motion, results, scenarios, strain, tracking
from NimosefSlicerLib.cine import CineNodes, load_cine_file, load_sequence_file
from NimosefSlicerLib.context import create_headless_context

from nimosef_engine.motion.fields import read_itk_field_ras, sample_field

TEST_RESULT = Path(__file__).resolve().parents[2] / "NimosefSlicer" / scenarios.TEST_RESULT_DIR


@pytest.fixture
def shipped(ctx):
    """The shipped 3-frame result imported into a fresh scene."""
    cine = load_sequence_file(ctx, TEST_RESULT / "cine.seq.nrrd")
    return results.ResultsImport(ctx, cine, TEST_RESULT, 2).run()


def _voxels_to_ras(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.asarray(ijk, np.float64) @ affine[:3, :3].T + affine[:3, 3]


def _share_in_myocardium(points: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> float:
    """Share of RAS points whose nearest voxel is myocardium (label 2) in ``labels``."""
    k = np.round((points - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    inside = np.all((k >= 0) & (k < labels.shape), axis=1)
    hits = np.zeros(len(points), bool)
    hits[inside] = labels[tuple(k[inside].T)] == 2
    return float(hits.mean())


def test_frame_transform_moves_ed_points_by_from_ed(ctx, shipped):
    """In every frame the motion proxy's transform to parent is ``p + u(p)`` with ``u`` the
    engine's own reading and sampling of ``from_ed_NN`` (scipy, trilinear), at random points
    of the grid and half a slice beyond its end slices."""
    sequence = shipped.sequences["motion"]
    assert shipped.cine.browser.IsSynchronizedSequenceNode(sequence.GetID(), True)
    assert sequence.GetNumberOfDataNodes() == shipped.cine.n_frames
    rng = np.random.default_rng(0)
    for t in range(shipped.cine.n_frames):
        u, affine = read_itk_field_ras(motion.field_path(TEST_RESULT, t))
        ijk = rng.uniform([0, 0, -0.5], np.array(u.shape[:3]) - [1, 1, 0.5], (400, 3))
        p = _voxels_to_ras(ijk, affine)
        shipped.cine.browser.SetSelectedItemNumber(t)
        proxy = shipped.cine.browser.GetProxyNode(sequence)
        assert proxy.IsA("vtkMRMLGridTransformNode")
        moved = motion.transform_points(proxy, p)
        np.testing.assert_allclose(moved, p + sample_field(u, ijk), rtol=0, atol=1e-3)
        if t != results.motion_ed_frame(shipped.summary):
            assert np.median(np.linalg.norm(moved - p, axis=1)) > 0.5  # it does move


def test_direction_agrees_with_slicers_reader_of_the_same_file(ctx, shipped):
    """*Add Data* of ``from_ed_NN`` (Slicer's transform storage node) gives ``p + u(p)`` as the
    transform FROM parent (ITK's resampling convention); the module's node holds the same map
    as the transform TO parent, so that markups under it move ED -> frame."""
    t = int(shipped.summary["es_frame"])
    loaded = ctx.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "loaded from_ed")
    storage = ctx.scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(motion.field_path(TEST_RESULT, t)))
    assert storage.ReadData(loaded)
    grid = loaded.GetTransformFromParentAs("vtkOrientedGridTransform", False)
    assert grid is not None and grid.GetInterpolationModeAsString() == "Cubic"
    grid.SetInterpolationModeToLinear()  # Slicer reads grids as cubic; the engine is trilinear
    ours = shipped.sequences["motion"].GetNthDataNode(t)
    labels, affine = results.read_output_nifti(TEST_RESULT / "seg.nii.gz", 4, np.uint8)
    p = _voxels_to_ras(np.argwhere(labels[..., 0] == 2) + 0.4, affine)
    from_parent = motion.transform_points(loaded.GetTransformFromParent(), p)
    np.testing.assert_allclose(motion.transform_points(ours, p), from_parent, atol=1e-3)
    assert np.median(np.linalg.norm(from_parent - p, axis=1)) > 1.0  # a real displacement
    # and the other way round: our inverse is Slicer's "to parent" of the loaded file
    np.testing.assert_allclose(motion.transform_points(ours.GetTransformFromParent(), p),
                               motion.transform_points(loaded.GetTransformToParent(), p),
                               atol=0.05)


def test_tracked_points_follow_the_wall(ctx, shipped):
    """Points on every ED myocardium voxel, tracked: in each frame most of them are in that
    frame's myocardium (seg.nii.gz), far more than if they had stayed put."""
    labels, affine = results.read_output_nifti(TEST_RESULT / "seg.nii.gz", 4, np.uint8)
    ed = results.motion_ed_frame(shipped.summary)
    points = _voxels_to_ras(np.argwhere(labels[..., ed] == 2), affine)
    positions = motion.tracked_positions(shipped.sequences["motion"], points)
    for t in range(shipped.cine.n_frames):
        tracked = _share_in_myocardium(positions[t], labels[..., t], affine)
        still = _share_in_myocardium(points, labels[..., t], affine)
        print(f"frame {t}: {100 * tracked:.1f} % of tracked ED myocardium points in the "
              f"myocardium, {100 * still:.1f} % untracked")
        assert tracked > 0.8 and (t == ed or tracked > still + 0.25)


def test_track_points_action(ctx, shipped):
    """The action on a point list: per-frame positions p + u(p) in a locked point list that
    the browser plays, a trajectory table; tracking again replaces; bad choices are refused
    with one message and change nothing."""
    tracked = scenarios.check_tracking(ctx, shipped, n_points=5)
    assert tracked.positions.shape == (shipped.cine.n_frames, 5, 3)
    assert tracked.proxy.GetLocked() and tracked.proxy.GetNumberOfControlPoints() == 5
    assert tracked.labels == [f"wall {i + 1}" for i in range(5)]
    table = curves.table_columns(tracked.table)
    assert tracked.table.GetNumberOfRows() == 5 * shipped.cine.n_frames
    assert table["point"][:5] == tracked.labels
    ed = results.motion_ed_frame(shipped.summary)
    assert np.all(table["displacement_mm"][table["frame"] == ed] < 1e-3)
    assert table["displacement_mm"].max() > 1.0
    placed = ctx.scene.GetNodeByID(tracked.sequence.GetAttribute(tracking.TRACK_SOURCE))
    n_nodes = ctx.scene.GetNumberOfNodes()
    again = tracking.track_points(ctx, shipped, placed)
    assert ctx.scene.GetNumberOfNodes() == n_nodes
    assert not ctx.scene.IsNodePresent(tracked.sequence)
    np.testing.assert_allclose(again.positions, tracked.positions)

    empty = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "nothing placed")
    before = scenarios.scene_snapshot(ctx.scene)
    for node, message in ((empty, "has no points"), (again.proxy, "tracked points"),
                          (None, "choose a point list")):
        with pytest.raises(ValueError, match=message):
            tracking.track_points(ctx, shipped, node)
    no_motion = results.NimosefResults(shipped.cine, {}, {}, None, None, {}, TEST_RESULT, 2)
    with pytest.raises(ValueError, match="run Segment & Track first"):
        tracking.track_points(ctx, no_motion, placed)
    assert scenarios.scene_snapshot(ctx.scene) == before


def test_arrows_sit_on_the_ed_myocardium_surface(ctx, shipped):
    """Arrow anchors are points of the ED myocardium's closed surface, most of them between
    the slices (not slice rings); each arrow's tip is where from_ed moves its anchor."""
    ed = results.motion_ed_frame(shipped.summary)
    seg_ed = shipped.sequences["segmentation"].GetNthDataNode(ed)
    surface = glyphs.segment_surface_points(seg_ed, "MYO")
    _, affine = results.read_output_nifti(TEST_RESULT / "seg.nii.gz", 4, np.uint8)
    fields = results.read_motion_fields(TEST_RESULT, shipped.cine.n_frames, affine)
    arrows = results.myocardium_arrows(seg_ed, fields)
    anchors = arrows[ed][0]
    assert 0 < len(anchors) <= glyphs.MAX_ARROWS_PER_FRAME < len(surface)
    assert set(map(tuple, anchors.round(4))) <= set(map(tuple, surface.round(4)))
    k = ((anchors - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T)[:, 2]
    assert np.mean(np.abs(k - np.round(k)) > 0.05) > 0.5, "arrows only at the slices"
    es = int(shipped.summary["es_frame"])
    u, _ = read_itk_field_ras(motion.field_path(TEST_RESULT, es))
    ijk = (anchors - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    np.testing.assert_allclose(arrows[es][1], sample_field(u, ijk), atol=1e-3)
    # one arrow per anchor in the frame's model, its tip at the anchor's ES position
    shipped.cine.browser.SetSelectedItemNumber(es)
    poly = shipped.cine.browser.GetProxyNode(shipped.sequences["glyphs"]).GetPolyData()
    one = glyphs.displacement_glyphs(anchors[:1], arrows[es][1][:1])
    n_per = one.GetNumberOfPoints()
    assert poly.GetNumberOfPoints() == len(anchors) * n_per
    pts = np.array([one.GetPoint(i) for i in range(n_per)])
    v = arrows[es][1][0]
    tip = pts[np.argmax((pts - anchors[0]) @ v)]
    np.testing.assert_allclose(tip, anchors[0] + v, atol=1e-3)


def test_strain_table_chart_and_peak_table(ctx, shipped):
    """Global strain curves (the three components against time) in their own chart, the peak
    per AHA segment as a table: the same numbers as the engine's own peak (pandas)."""
    import pandas as pd

    from nimosef_engine.motion.strain import peak_strain

    csv_path = TEST_RESULT / "strain.csv"
    table = curves.table_columns(shipped.strain_table)
    assert table["frame"].tolist() == list(range(shipped.cine.n_frames))
    chart = shipped.strain_chart
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    x = chart.GetNthPlotSeriesNode(0).GetXColumnName()
    assert x == "time"  # the shipped cine has no trigger times: fraction of the cycle
    frame = pd.read_csv(csv_path, dtype={"segment": str})
    peak = curves.table_columns(shipped.peak_table)
    assert peak["segment"][:16] == [str(s) for s in range(1, 17)] and \
        peak["segment"][16] == "global"
    assert peak["name"][0] == "basal anterior" and peak["name"][13] == "apical septal"
    for component in strain.COMPONENTS:
        want = peak_strain(frame, component)
        got = dict(zip(peak["segment"], peak[f"peak_{component}"], strict=True))
        for seg, value in want.items():
            assert got[seg] == pytest.approx(value, abs=0.0051, nan_ok=True), (component, seg)
        glob = frame[frame.segment == "global"].sort_values("frame")[component].to_numpy()
        np.testing.assert_allclose(table[component], glob, atol=0.0051)
    es = int(shipped.summary["es_frame"])  # the LV shortens circumferentially at ES
    assert table["circumferential_pct"][es] < 0 < table["radial_pct"][es]


def test_time_axis_uses_trigger_times_when_there_are_some(ctx):
    with_ms = {"frame": np.arange(3), "time": np.array([0, .3, .6]),
               "time_ms": np.array([0.0, 300.0, 600.0])}
    assert curves.time_axis(with_ms) == ("time_ms", "time (ms)")
    assert curves.time_axis({**with_ms, "time_ms": np.array([0.0, np.nan, 600.0])})[0] == "time"


def test_motion_and_tracked_points_survive_an_mrb_round_trip(ctx, shipped, tmp_path):
    tracked = scenarios.check_tracking(ctx, shipped, n_points=4)
    ctx2, browser2 = scenarios.check_mrb_roundtrip(
        ctx, shipped.cine.browser, tmp_path / "motion.mrb", create_headless_context)
    described = scenarios.describe_scene(ctx2.scene, browser2)
    assert described["sequences"][tracked.sequence.GetName()]["frames"][0][1]["labels"] == \
        tracked.labels
    sequence = browser2.GetMasterSequenceNode()
    res2 = scenarios.find_results(ctx2, CineNodes(sequence, browser2,
                                                  browser2.GetProxyNode(sequence)))
    assert res2.strain_table is not None and res2.peak_table is not None
    res2.output_dir = TEST_RESULT  # the .mrb does not say where the files were
    scenarios.check_results(ctx2, res2)  # motion exact again (trilinear restored)


def test_missing_or_bad_motion_files_name_the_file_and_leave_the_scene(ctx, tmp_path):
    from nimosef_engine.core.errors import NimosefInputError

    folder = tmp_path / "result"
    shutil.copytree(TEST_RESULT, folder)
    cine = load_sequence_file(ctx, folder / "cine.seq.nrrd")
    before = scenarios.scene_snapshot(ctx.scene)
    (folder / "motion" / "from_ed_01.nii.gz").unlink()
    with pytest.raises(NimosefInputError, match=r"from_ed_01.nii.gz.*missing"):
        results.ResultsImport(ctx, cine, folder, 2).run()
    shutil.copy(folder / "seg.nii.gz", folder / "motion" / "from_ed_01.nii.gz")
    with pytest.raises(NimosefInputError, match=r"from_ed_01.nii.gz.*not a displacement field"):
        results.ResultsImport(ctx, cine, folder, 2).run()
    shutil.copy(TEST_RESULT / "motion" / "from_ed_01.nii.gz", folder / "motion")
    lines = (folder / "strain.csv").read_text().splitlines()
    (folder / "strain.csv").write_text("\n".join(l for l in lines if not l.startswith("2,")))
    with pytest.raises(NimosefInputError, match=r"strain.csv.*global rows for frames \[0, 1\]"):
        results.ResultsImport(ctx, cine, folder, 2).run()
    assert scenarios.scene_snapshot(ctx.scene) == before
    shutil.copy(TEST_RESULT / "strain.csv", folder)
    res = results.ResultsImport(ctx, cine, folder, 2, with_motion=False).run()
    assert "motion" not in res.sequences and res.strain_table is None


# ---------------------------------------------------------------- the 12-frame demo run
def test_demo_run_motion_in_the_scene(ctx, engine_run, sample_cine):
    """On the session's engine run (12 frames): the motion, arrows, strain and tracking checks;
    tracked ED myocardium stays in the myocardium through the cycle; and the transform's
    inverse (what resamples an ED image into a frame) agrees with the engine's ``to_ed``."""
    out_dir, _, _ = engine_run
    cine = load_cine_file(ctx, sample_cine)
    res = results.ResultsImport(ctx, cine, out_dir, 2).run()
    assert cine.browser.GetNumberOfSynchronizedSequenceNodes() == 4
    scenarios.check_results(ctx, res, frames=tuple(range(cine.n_frames)))
    scenarios.check_tracking(ctx, res)
    labels, affine = results.read_output_nifti(out_dir / "seg.nii.gz", 4, np.uint8)
    ed = results.motion_ed_frame(res.summary)
    points = _voxels_to_ras(np.argwhere(labels[..., ed] == 2), affine)
    positions = motion.tracked_positions(res.sequences["motion"], points)
    shares = [_share_in_myocardium(positions[t], labels[..., t], affine)
              for t in range(cine.n_frames)]
    still = [_share_in_myocardium(points, labels[..., t], affine) for t in range(cine.n_frames)]
    print("tracked ED myocardium in the myocardium (%):", np.round(100 * np.array(shares), 1),
          "untracked:", np.round(100 * np.array(still), 1))
    assert min(shares) > 0.75 and np.mean(shares) > np.mean(still) + 0.15
    es = int(res.summary["es_frame"])
    v, _ = read_itk_field_ras(out_dir / "motion" / f"to_ed_{es:02d}.nii.gz")
    ijk = np.argwhere(labels[..., es] == 2).astype(np.float64)
    y = _voxels_to_ras(ijk, affine)
    node = res.sequences["motion"].GetNthDataNode(es)
    back = motion.transform_points(node.GetTransformFromParent(), y)
    gap = np.linalg.norm(back - (y + sample_field(v, ijk)), axis=1)
    size = np.linalg.norm(sample_field(v, ijk), axis=1)
    print(f"ES: inverse of from_ed vs to_ed on the ES myocardium: median {np.median(gap):.2f} "
          f"mm, 90th percentile {np.percentile(gap, 90):.2f} mm (|to_ed| median "
          f"{np.median(size):.2f} mm)")
    assert np.median(gap) < 0.25 * np.median(size)
    # the region where tissue moves is kept; the rest of the grid is cut off
    cut = res.sequences["motion"].GetNthDataNode(es).GetTransformToParentAs(
        "vtkOrientedGridTransform", False).GetDisplacementGrid().GetDimensions()
    assert np.prod(cut) < np.prod(labels.shape[:3])
