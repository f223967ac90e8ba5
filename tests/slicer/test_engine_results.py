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

pytestmark = pytest.mark.slow  # every test here runs the engine end to end


def test_engine_output_folder_follows_the_contract(engine_run):
    out_dir, events, seconds = engine_run
    for name in ("seg.nii.gz", "seg_z2.nii.gz", "rec_z2.nii.gz", "motion.parquet",
                 "volumes.csv", "summary.json", "subject.nimosef", "config.json", "strain.csv",
                 "motion/from_ed_00.nii.gz", "motion/to_ed_00.nii.gz"):
        assert (out_dir / name).exists(), f"{name} missing from the segment-track output"
    scenarios.check_progress(events)
    assert events[-1].fraction == pytest.approx(1.0)
    print(f"segment-track (fast) on the sample cine: {seconds:.1f} s")
    # the panel shows the engine's own quality verdict
    summary = results.read_summary(out_dir)
    text = results.quality_text(summary)
    assert summary["quality"]["verdict"] in ("ok", "check")
    assert text == "ok" if summary["quality"]["verdict"] == "ok" else text.startswith("CHECK: ")
    assert results.quality_text({**summary, "quality": {"verdict": "check", "reasons": [
        "heart localisation uncertain (confidence 0.48)"]}}) == \
        "CHECK: heart localisation uncertain (confidence 0.48)"
    assert results.quality_text({k: v for k, v in summary.items() if k != "quality"}) == "-"


def test_import_results_into_the_scene(ctx, imported):
    scenarios.check_results(ctx, imported)
    browser = imported.cine.browser
    assert browser.GetNumberOfSynchronizedSequenceNodes() == 4
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
    assert imported.cine.browser.GetNumberOfSynchronizedSequenceNodes() == 4
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
    start = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - start < 0.5, "cancel() held the GUI"
    assert not job.preview_shown  # the frame is back at once
    assert job.wait_stopped(30) and not job.work_dir.exists()
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
    print(f"cancel of a real run held the caller {1000 * job.cancel_seconds:.1f} ms")
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


MAX_GUI_S = 0.5  # the longest the GUI may be held by one step


def test_results_import_never_holds_the_gui_long(ctx, engine_run, sample_cine):
    """The import as the widget runs it, on the real demo result (12 frames): the files are
    read in a worker thread while the GUI thread keeps ticking (the longest gap between its
    10 ms ticks is measured), then one scene step per tick (each timed)."""
    import threading

    out_dir, _, _ = engine_run
    cine = load_cine_file(ctx, sample_cine)
    importer = results.ResultsImport(ctx, cine, out_dir, 2)
    reader = threading.Thread(target=importer.read)
    start = last = time.perf_counter()
    longest_gap = 0.0
    reader.start()
    while reader.is_alive():
        time.sleep(0.01)
        now = time.perf_counter()
        longest_gap, last = max(longest_gap, now - last), now
    read_s = time.perf_counter() - start
    steps: list = []
    res = importer.run(steps)
    longest = max(steps, key=lambda s: s[1])
    print(f"demo import: read {read_s:.2f} s in a worker thread (longest GUI-thread gap "
          f"{1000 * longest_gap:.0f} ms), then {len(steps)} GUI steps, longest "
          f"{1000 * longest[1]:.0f} ms ({longest[0]}), total {sum(s for _, s in steps):.2f} s")
    assert longest[1] < MAX_GUI_S and longest_gap < MAX_GUI_S
    scenarios.check_results(ctx, res)


def test_own_work_folder_goes_after_success_and_the_slider_still_works(
        ctx, engine_run, test_prior, repo_root, tmp_path):
    """A job with its own work folder (as the GUI runs it), on the small shipped cine: the
    results come in through ``import_step`` (each call timed), the folder is gone afterwards,
    and the z-resolution slider re-samples from the fitted subject kept in memory."""
    from NimosefSlicerLib.cine import load_sequence_file

    temp = tmp_path / "slicer_temp"
    temp.mkdir()
    module_dir = repo_root / "NimosefSlicer"
    cine = load_sequence_file(ctx, module_dir / scenarios.TEST_RESULT_DIR / "cine.seq.nrrd")
    options = SegmentTrackOptions(quality="fast", device="cpu", prior=test_prior)
    job = SegmentTrackJob(ctx, cine, options, sys.executable, str(repo_root), temp_dir=temp)
    assert job.owns_work_dir and job.work_dir.parent == temp
    job.start()
    assert job.process.wait(timeout_s=600) == 0, job.process.error_message()
    while not job.finished():
        time.sleep(0.05)
    calls = []
    while True:
        start = time.perf_counter()
        done = job.import_step()
        calls.append(time.perf_counter() - start)
        if done:
            break
        time.sleep(0.005)
    print(f"import_step: {len(calls)} calls, longest {1000 * max(calls):.0f} ms")
    assert max(calls) < MAX_GUI_S
    assert not job.work_dir.exists() and not any(temp.iterdir()), "work folder left behind"
    res = job.results
    assert res.subject and res.sequences["segmentation"].GetAttribute(results.OUTPUT_DIR) == ""
    assert res.summary["n_frames"] == cine.n_frames == 3
    resample = ResampleJob(ctx, res, 3, sys.executable, str(repo_root), preview_frame=0,
                           temp_dir=temp)
    resample.run(timeout_s=300)
    proxy = cine.browser.GetProxyNode(res.sequences["superres"])
    assert volume_array_xyz(proxy).shape[2] == 3 * volume_array_xyz(cine.proxy).shape[2]
    assert res.res_factor_z == 3 and not any(temp.iterdir())


def test_failed_run_removes_its_work_folder_even_when_asked_to_keep(ctx, sample_cine, engine_run,
                                                                     tmp_path, repo_root):
    cine = load_cine_file(ctx, sample_cine)
    options = SegmentTrackOptions(quality="fast", prior=str(tmp_path / "no_such_prior.pt"))
    job = SegmentTrackJob(ctx, cine, options, sys.executable, str(repo_root),
                          keep_outputs=True, temp_dir=tmp_path)
    with pytest.raises(EngineError, match="no_such_prior.pt"):
        job.run(timeout_s=120)
    assert not job.work_dir.exists()
