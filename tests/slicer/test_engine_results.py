"""Real engine outputs in the scene: import, synchronised playback, resample from the slider
path, cancel of a real run, and a .mrb round trip. The engine runs once per session
(``engine_run`` in conftest); these tests skip only while segment-track does not exist."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from NimosefSlicerLib import curves, results, scenarios
from NimosefSlicerLib.cine import CineNodes, ijk_to_ras, load_cine_file, volume_array_xyz
from NimosefSlicerLib.context import create_headless_context
from NimosefSlicerLib.runner import EngineError, SegmentTrackOptions
from NimosefSlicerLib.workflow import ResampleJob, SegmentTrackJob


def test_engine_output_folder_follows_the_contract(engine_run):
    out_dir, events, seconds = engine_run
    for name in ("seg.nii.gz", "seg_z2.nii.gz", "rec_z2.nii.gz", "motion.parquet",
                 "volumes.csv", "summary.json", "subject.nimosef", "config.json"):
        assert (out_dir / name).exists(), f"{name} missing from the segment-track output"
    scenarios.check_progress(events)
    assert events[-1].fraction == pytest.approx(1.0)
    print(f"segment-track (fast) on the sample cine: {seconds:.1f} s")


def test_import_results_into_the_scene(ctx, imported):
    scenarios.check_results(ctx, imported)
    browser = imported.cine.browser
    assert browser.GetNumberOfSynchronizedSequenceNodes() == 3
    # one play button: changing the cine frame changes every proxy
    sums = []
    for t in (0, imported.cine.n_frames // 2):
        browser.SetSelectedItemNumber(t)
        seg = browser.GetProxyNode(imported.sequences["segmentation"])
        sums.append((float(volume_array_xyz(imported.cine.proxy).sum()),
                     float(volume_array_xyz(browser.GetProxyNode(
                         imported.sequences["superres"])).sum()),
                     seg.GetSegmentation().GetSegment("LV").GetName()))
    assert sums[0][0] != sums[1][0] and sums[0][1] != sums[1][1]


def test_reimport_replaces_earlier_results(ctx, imported):
    from NimosefSlicerLib.results import import_results

    n_nodes = ctx.scene.GetNumberOfNodes()
    again = import_results(ctx, imported.cine, imported.output_dir, 2)
    assert ctx.scene.GetNumberOfNodes() == n_nodes
    assert imported.cine.browser.GetNumberOfSynchronizedSequenceNodes() == 3
    assert not ctx.scene.IsNodePresent(imported.table)
    scenarios.check_results(ctx, again, frames=(0,))


def test_volume_curves_csv_export(imported, tmp_path):
    out = curves.export_table_csv(imported.table, tmp_path / "curves.csv")
    back = curves.read_volume_curves(out)
    truth = curves.read_volume_curves(imported.output_dir / "volumes.csv")
    for column in curves.CURVE_COLUMNS:  # kept to 0.01 mL, 0.1 ms, 1e-4 cycle
        tol = 0.5 * 10.0 ** -curves.DECIMALS[column] + 1e-9
        np.testing.assert_allclose(back[column], truth[column], rtol=0, atol=tol)


def test_resample_from_the_slider_path(ctx, imported, resample_available, repo_root):
    scenarios.check_resample(ctx, imported, 3, sys.executable, str(repo_root), timeout_s=300)
    scenarios.check_results(ctx, imported, frames=(0,))


def test_cancel_after_the_preview_puts_the_frame_back(ctx, imported, resample_available,
                                                     repo_root):
    """Cancel once the frame on screen was re-sampled: the sequence's own frame is shown again
    (old grid, old voxels) and the sequence is unchanged."""
    sequence = imported.sequences["superres"]
    browser = imported.cine.browser
    browser.SetSelectedItemNumber(0)
    before = volume_array_xyz(browser.GetProxyNode(sequence))
    before_affine = ijk_to_ras(browser.GetProxyNode(sequence))
    job = ResampleJob(ctx, imported, 4, sys.executable, str(repo_root), preview_frame=0).start()
    deadline = time.monotonic() + 300
    while not job.preview_shown:
        assert not job.finished() and time.monotonic() < deadline, "no preview event came"
        job.poll()
        time.sleep(0.05)
    shown = volume_array_xyz(browser.GetProxyNode(sequence))
    assert shown.shape[2] == 4 * before.shape[2] // imported.res_factor_z  # the new grid
    job.cancel()
    assert not job.preview_shown and not job.work_dir.exists()
    after = browser.GetProxyNode(sequence)
    assert np.array_equal(volume_array_xyz(after), before)
    np.testing.assert_array_equal(ijk_to_ras(after), before_affine)
    assert sequence.GetAttribute(results.RES_FACTOR) == str(imported.res_factor_z)


def test_cancel_real_run_kills_tree_and_leaves_scene(ctx, sample_cine, engine_run, test_prior,
                                                     repo_root):
    cine = load_cine_file(ctx, sample_cine)
    options = SegmentTrackOptions(quality="fast", device="cpu", prior=test_prior)
    job = SegmentTrackJob(ctx, cine, options, sys.executable, str(repo_root))
    tree = scenarios.check_cancel(ctx, job)
    assert job.process.pid in tree
    with pytest.raises(EngineError, match="cancelled"):
        job.finish()


def test_engine_error_reaches_the_user_as_one_line(ctx, sample_cine, engine_run, tmp_path,
                                                   repo_root):
    cine = load_cine_file(ctx, sample_cine)
    options = SegmentTrackOptions(quality="fast", prior=str(tmp_path / "no_such_prior.pt"))
    job = SegmentTrackJob(ctx, cine, options, sys.executable, str(repo_root))
    before = scenarios.scene_snapshot(ctx.scene)
    with pytest.raises(EngineError, match="no_such_prior.pt") as info:
        job.run(timeout_s=120)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert scenarios.scene_snapshot(ctx.scene) == before
    assert not job.work_dir.exists()


def test_mrb_round_trip_loses_nothing(ctx, imported, tmp_path):
    ctx2, browser2 = scenarios.check_mrb_roundtrip(
        ctx, imported.cine.browser, tmp_path / "nimosef.mrb", create_headless_context)
    sequence = browser2.GetMasterSequenceNode()
    res2 = scenarios.find_results(ctx2, CineNodes(sequence, browser2,
                                                  browser2.GetProxyNode(sequence)))
    assert res2.summary == imported.summary
    scenarios.check_results(ctx2, res2, frames=(int(res2.summary["es_frame"]),))


def test_result_snapshot_picture(ctx, imported, tmp_path):
    from NimosefSlicerLib import offscreen

    path = offscreen.result_snapshot(ctx, imported.cine, imported.sequences["segmentation"],
                                     tmp_path / "result.png",
                                     int(imported.summary["es_frame"]), size=(200, 200))
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    assert reader.GetOutput().GetDimensions()[:2] == (400, 200)
    rgb = vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars())
    assert rgb.std() > 20  # an image, not a blank window
