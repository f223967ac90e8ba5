"""Workflow scenarios and scene checks shared by the Slicer self-test and the pytest suite.

Each ``check_*`` function inspects the scene and raises AssertionError with a precise message;
``NimosefSlicerTest`` (in the app) and ``tests/slicer`` (with slicer-core) call the same
functions, so the self-test is not a second, untested copy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import curves, glyphs, motion, results, segments, tracking
from . import strain as strain_lib
from .cine import CineNodes, export_cine_to_nifti, ijk_to_ras, load_cine_file, volume_array_xyz
from .runner import ProgressEvent, SegmentTrackOptions, process_alive
from .workflow import EngineJob, ResampleJob, SegmentTrackJob

SAMPLE_CINE = Path("tests") / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz"
"""The sample cine (ACDC patient090, 12 frames), relative to the repository root."""


def _check(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def voxel_ras_grid(affine_ras: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """RAS mm of every voxel centre of a grid, ``(X*Y*Z, 3)`` (engine geometry)."""
    from nimosef_engine.core.geometry import grid_ijk, voxel_to_ras

    return voxel_to_ras(affine_ras, grid_ijk(shape))


def scene_snapshot(scene) -> list[tuple[str, str, str]]:
    """(ID, class, name) of every node, plus synchronised-sequence counts of browsers."""
    snap = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        extra = ""
        if node.IsA("vtkMRMLSequenceBrowserNode"):
            extra = str(node.GetNumberOfSynchronizedSequenceNodes())
        snap.append((node.GetID(), node.GetClassName(), f"{node.GetName()}|{extra}"))
    return snap


# ----------------------------------------------------------------------------- cine in/out
def load_and_check_cine(ctx, path: str | Path) -> CineNodes:
    """Load a 4D NIfTI as a cine and check frames and geometry against the engine's reader."""
    from nimosef_engine.io.nifti import load_nifti

    cine = load_cine_file(ctx, path)
    data, affine = load_nifti(path, ndim=4)
    _check(cine.n_frames == data.shape[3],
           f"{cine.n_frames} frames in the sequence, {data.shape[3]} in {path}")
    _check(cine.browser.GetMasterSequenceNode() is cine.sequence, "browser plays another node")
    for t in (0, data.shape[3] - 1):
        node = cine.sequence.GetNthDataNode(t)
        _check(np.allclose(ijk_to_ras(node), affine, atol=1e-5),
               f"frame {t}: IJKToRAS {ijk_to_ras(node).tolist()} != {affine.tolist()}")
        _check(np.array_equal(volume_array_xyz(node), data[..., t]), f"frame {t}: voxels differ")
    return cine


def check_export_roundtrip(cine: CineNodes, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Export the cine to 4D NIfTI, read it back with the engine: voxels and the RAS position
    of every voxel must be unchanged. Returns the read (data, affine)."""
    from nimosef_engine.io.nifti import load_nifti

    export_cine_to_nifti(cine.sequence, path)
    data, affine = load_nifti(path, ndim=4)
    _check(data.shape[3] == cine.n_frames, f"{data.shape[3]} frames exported of {cine.n_frames}")
    first = cine.sequence.GetNthDataNode(0)
    shape = data.shape[:3]
    ras_scene = voxel_ras_grid(ijk_to_ras(first), shape)
    ras_file = voxel_ras_grid(affine, shape)
    err = float(np.abs(ras_scene - ras_file).max())
    _check(err < 1e-3, f"voxel RAS positions moved by up to {err} mm on export")
    for t in range(cine.n_frames):
        _check(np.array_equal(data[..., t],
                              volume_array_xyz(cine.sequence.GetNthDataNode(t)).astype(data.dtype)),
               f"frame {t}: exported voxels differ")
    return data, affine


# ----------------------------------------------------------------------------- engine runs
def run_segment_track(ctx, cine: CineNodes, options: SegmentTrackOptions, python: str | None,
                      engine_parent: str | Path | None, work_dir: str | Path | None = None,
                      timeout_s: float | None = None) -> tuple[results.NimosefResults,
                                                               list[ProgressEvent]]:
    """The Segment & Track button, blocking: returns the results and the progress seen."""
    events: list[ProgressEvent] = []
    job = SegmentTrackJob(ctx, cine, options, python, engine_parent, work_dir)
    res = job.run(events.append, timeout_s)
    return res, events


def check_progress(events: list[ProgressEvent]) -> None:
    """Progress came as JSON lines: at least one event, fractions within [0, 1]."""
    _check(len(events) > 0, "no JSON progress line was received from the engine")
    _check(all(0.0 <= e.fraction <= 1.0 for e in events), "progress fraction out of [0, 1]")


def check_cancel(ctx, job: EngineJob, wait_for_progress_s: float = 60.0,
                 max_gui_s: float = 0.5) -> list[int]:
    """Start ``job``, cancel it once it runs: ``cancel()`` returns within ``max_gui_s`` (the
    time it holds the GUI, stored in ``job.cancel_seconds``), the process tree is then gone,
    the working folder removed and the scene unchanged. Returns the pids that were stopped."""
    before = scene_snapshot(ctx.scene)
    job.start()
    start = time.monotonic()
    while time.monotonic() - start < wait_for_progress_s and job.process.running:
        if job.poll():
            break
        time.sleep(0.05)
    _check(job.process.running, f"the job ended before it could be cancelled: "
                                f"{job.process.error_message()}")
    from .runner import child_pids

    tree = [job.process.pid] + child_pids(job.process.pid)
    start = time.perf_counter()
    job.cancel()
    job.cancel_seconds = time.perf_counter() - start
    _check(job.cancel_seconds < max_gui_s, f"cancel() held the caller {job.cancel_seconds:.3f} s"
                                           f" (the GUI may wait at most {max_gui_s} s)")
    _check(job.wait_stopped(30), "the engine's process tree did not stop within 30 s")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(process_alive(p) for p in tree):
        time.sleep(0.05)
    alive = [p for p in tree if process_alive(p)]
    _check(not alive, f"processes still running after cancel: {alive}")
    _check(not job.work_dir.exists(), f"working folder {job.work_dir} left behind")
    _check(scene_snapshot(ctx.scene) == before, "the scene changed although the run was "
                                                 "cancelled")
    return tree


# ----------------------------------------------------------------------------- results
def check_results(ctx, res: results.NimosefResults, frames: tuple[int, ...] | None = None) -> None:
    """The scene after Segment & Track matches the engine's output folder."""
    from nimosef_engine.core.geometry import resample_grid_z

    cine = res.cine
    browser = cine.browser
    values = [cine.sequence.GetNthIndexValue(t) for t in range(cine.n_frames)]
    for role, sequence in res.sequences.items():
        _check(browser.IsSynchronizedSequenceNode(sequence.GetID(), True),
               f"{role} sequence is not synchronised to the cine browser")
        seq_values = [sequence.GetNthIndexValue(t) for t in range(sequence.GetNumberOfDataNodes())]
        _check(seq_values == values, f"{role} index values {seq_values} != cine {values}")

    labels, seg_affine = results.read_output_nifti(res.output_dir / "seg.nii.gz", 4, np.uint8)
    rec, rec_affine, _ = results.load_superres(res.superres_source, res.res_factor_z)
    with_motion = "motion" in res.sequences
    if with_motion:
        ed = results.motion_ed_frame(res.summary)
        _check(res.sequences["motion"].GetAttribute(motion.ED_FRAME) == str(ed),
               "the motion sequence does not start from the ED frame of summary.json")
        anchors = glyphs.segment_surface_points(
            res.sequences["segmentation"].GetNthDataNode(ed), "MYO")
        anchors = anchors[glyphs.subsample_indices(len(anchors))]
        myo = np.argwhere(labels[..., ed] == 2)
        myo = myo[np.linspace(0, len(myo) - 1, min(len(myo), 200)).astype(int)]
        probe_ijk = np.vstack([myo, myo + np.array([0.5, 0.25, 0.5])])  # nodes and between
    cine_affine = ijk_to_ras(cine.sequence.GetNthDataNode(0))
    _check(np.allclose(seg_affine, cine_affine, atol=1e-4), "seg.nii.gz is not on the cine grid")
    want_affine, want_shape = resample_grid_z(cine_affine, labels.shape[:3], res.res_factor_z)
    specs = segments.segment_specs()
    frames = frames if frames is not None else (int(res.summary["ed_frame"]),
                                                int(res.summary["es_frame"]))
    for t in frames:
        browser.SetSelectedItemNumber(t)
        seg_proxy = browser.GetProxyNode(res.sequences["segmentation"])
        segmentation = seg_proxy.GetSegmentation()
        for spec in specs:
            segment = segmentation.GetSegment(spec.segment_id)
            _check(segment is not None, f"frame {t}: segment {spec.segment_id} missing")
            _check(segment.GetName() == spec.name, f"segment name {segment.GetName()}")
            _check(spec.code_value in segment.GetTerminology(),
                   f"{spec.name}: terminology {segment.GetTerminology()}")
            _check(np.allclose(segment.GetColor(), spec.color, atol=1e-3),
                   f"{spec.name}: colour {segment.GetColor()} != {spec.color}")
        counts = segments.segment_voxel_counts(seg_proxy)
        for spec in specs:
            want = int(np.count_nonzero(labels[..., t] == spec.label))
            _check(counts[spec.segment_id] == want,
                   f"frame {t}: {spec.segment_id} has {counts[spec.segment_id]} voxels, "
                   f"seg.nii.gz {want}")
        display = seg_proxy.GetDisplayNode()
        _check(display is not None and display.GetVisibility3D(), "3D surfaces are off")

        sr_proxy = browser.GetProxyNode(res.sequences["superres"])
        _check(np.allclose(ijk_to_ras(sr_proxy), want_affine, atol=1e-4),
               f"super-resolved grid {ijk_to_ras(sr_proxy).tolist()} != resample_grid_z")
        _check(volume_array_xyz(sr_proxy).shape == tuple(want_shape), "super-resolved shape")
        _check(np.allclose(volume_array_xyz(sr_proxy), rec[..., t]), "super-resolved voxels")

        if with_motion:
            _check_motion_frame(res, t, probe_ijk, anchors)

    table = curves.table_columns(res.table)
    csv_curves = curves.read_volume_curves(res.output_dir / "volumes.csv")
    _check(res.table.GetNumberOfRows() == cine.n_frames, "table rows != frames")
    for column in ("LV_mL", "MYO_mL", "RV_mL"):
        _check(np.allclose(table[column], csv_curves[column], rtol=0, atol=0.0051),
               f"table column {column} != volumes.csv (to 0.01 mL)")
    _check(res.chart.GetNumberOfPlotSeriesNodes() == 3, "chart needs LV, MYO and RV series")
    if with_motion:
        _check_strain(res)
    s = res.summary
    _check(s["LV_EDV_mL"] >= s["LV_ESV_mL"] > 0, f"EDV {s['LV_EDV_mL']} ESV {s['LV_ESV_mL']}")
    ef = 100.0 * (s["LV_EDV_mL"] - s["LV_ESV_mL"]) / s["LV_EDV_mL"]
    _check(abs(ef - s["LV_EF_pct"]) < 0.5, f"EF {s['LV_EF_pct']} != 100 (EDV-ESV)/EDV = {ef}")


def trilinear(vectors: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """``vectors (X, Y, Z, C)`` at voxel positions ``ijk (N, 3)``: trilinear, the edge value
    beyond the grid (as the engine samples its fields), numpy only -> ``(N, C)``."""
    shape = np.array(vectors.shape[:3])
    x = np.clip(np.asarray(ijk, np.float64), 0, shape - 1)
    i0 = np.minimum(np.floor(x).astype(int), np.maximum(shape - 2, 0))
    i1 = np.minimum(i0 + 1, shape - 1)
    f = x - i0
    out = np.zeros((len(x), vectors.shape[-1]))
    for corner in range(8):
        pick = [(corner >> a) & 1 for a in range(3)]
        idx = tuple(np.where(pick[a], i1[:, a], i0[:, a]) for a in range(3))
        w = np.prod([np.where(pick[a], f[:, a], 1 - f[:, a]) for a in range(3)], axis=0)
        out += w[:, None] * vectors[idx]
    return out


def _check_motion_frame(res: results.NimosefResults, t: int, probe_ijk: np.ndarray,
                        anchors: np.ndarray) -> None:
    """Frame ``t`` (selected) of the motion: the proxy transform moves an ED point ``p`` to
    ``p + u(p)``, ``u`` read from ``from_ed_NN.nii.gz`` (trilinear, numpy), at voxel centres
    of the ED myocardium and between them; the arrows sit on the ED myocardium's surface
    with that displacement."""
    browser = res.cine.browser
    vectors, affine = motion.read_displacement_field(motion.field_path(res.output_dir, t))
    points = probe_ijk @ affine[:3, :3].T + affine[:3, 3]
    want = points + trilinear(vectors, probe_ijk)
    got = motion.transform_points(browser.GetProxyNode(res.sequences["motion"]), points)
    err = float(np.abs(got - want).max())
    _check(err < 1e-3, f"frame {t}: the motion transform misplaces ED points by {err:.4f} mm "
                       f"(p + u(p) of from_ed_{t:02d})")
    mags = glyphs.glyph_magnitudes(browser.GetProxyNode(res.sequences["glyphs"]).GetPolyData())
    per_arrow = glyphs.displacement_glyphs(np.zeros((1, 3)), np.ones((1, 3))).GetNumberOfPoints()
    _check(len(mags) == len(anchors) * per_arrow,
           f"frame {t}: {len(mags)} arrow vertices for {len(anchors)} surface points")
    if len(anchors):
        ijk = (anchors - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
        peak = float(np.linalg.norm(trilinear(vectors, ijk), axis=1).max())
        _check(abs(float(mags.max(initial=0)) - peak) < 1e-3,
               f"frame {t}: longest arrow {mags.max(initial=0):.4f} mm, from_ed_{t:02d} "
               f"gives {peak:.4f} mm on the ED myocardium")


def _check_strain(res: results.NimosefResults) -> None:
    """The strain table holds strain.csv's global rows (to 0.01 %), the chart its three
    components, the peak table one row per segment present."""
    rows = strain_lib.read_strain(res.output_dir / strain_lib.STRAIN_FILE)
    glob = strain_lib.global_curves(rows)
    table = curves.table_columns(res.strain_table)
    _check(list(table["frame"].astype(int)) == list(glob["frame"]), "strain table frames")
    for c in strain_lib.COMPONENTS:
        _check(np.allclose(table[c], glob[c], rtol=0, atol=0.0051, equal_nan=True),
               f"strain table column {c} != strain.csv global rows")
    series = sorted(res.strain_chart.GetNthPlotSeriesNode(k).GetYColumnName()
                    for k in range(res.strain_chart.GetNumberOfPlotSeriesNodes()))
    _check(series == sorted(strain_lib.COMPONENTS), f"strain chart series {series}")
    peak = curves.table_columns(res.peak_table)
    _check(peak["segment"] == [s for s in strain_lib.SEGMENTS if s in set(rows["segment"])],
           f"peak table segments {peak['segment']}")


def check_tracking(ctx, res: results.NimosefResults, n_points: int = 6
                   ) -> tracking.TrackedPoints:
    """*Track points* on points of the ED myocardium (between voxel centres): in every frame
    the tracked list shows ``p + u_t(p)`` (from_ed_NN.nii.gz, trilinear, numpy), the table
    holds the same, and the placed list is untouched."""
    ed = results.motion_ed_frame(res.summary)
    labels, affine = results.read_output_nifti(res.output_dir / "seg.nii.gz", 4, np.uint8)
    myo = np.argwhere(labels[..., ed] == 2)
    ijk = myo[np.linspace(0, len(myo) - 1, n_points).astype(int)] + 0.3
    points = ijk @ affine[:3, :3].T + affine[:3, 3]
    placed = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "ED points")
    for i, p in enumerate(points):
        placed.AddControlPointWorld(p.tolist(), f"wall {i + 1}")
    tracked = tracking.track_points(ctx, res, placed)
    _check(res.cine.browser.IsSynchronizedSequenceNode(tracked.sequence.GetID(), True),
           "the tracked points are not in the cine's browser")
    table = curves.table_columns(tracked.table)
    for t in range(res.cine.n_frames):
        vectors, _ = motion.read_displacement_field(motion.field_path(res.output_dir, t))
        want = points + trilinear(vectors, ijk)
        res.cine.browser.SetSelectedItemNumber(t)
        _, shown = tracking.placed_points(res.cine.browser.GetProxyNode(tracked.sequence))
        err = float(np.abs(shown - want).max())
        _check(err < 1e-3, f"frame {t}: tracked points {err:.4f} mm from p + u(p)")
        rows = table["frame"] == t
        got = np.stack([table[c][rows] for c in ("R", "A", "S")], -1)
        _check(np.allclose(got, want, rtol=0, atol=1.1e-3), f"frame {t}: trajectory table")
    _, still = tracking.placed_points(placed)
    _check(np.allclose(still, points), "the placed points moved")
    return tracked


def check_resample(ctx, res: results.NimosefResults, factor: int, python: str | None,
                   engine_parent: str | Path | None, timeout_s: float | None = None) -> None:
    """The z-resolution slider path: the frame on screen is re-sampled first and shown on the
    new grid while the sequence still holds the old frames; then ``nimosef resample`` updates
    the super-resolved sequence in place (same sequence node, same browser)."""
    from nimosef_engine.core.geometry import resample_grid_z

    sequence = res.sequences["superres"]
    n_sync = res.cine.browser.GetNumberOfSynchronizedSequenceNodes()
    cine_node = res.cine.sequence.GetNthDataNode(0)
    shape = volume_array_xyz(cine_node).shape
    want_affine, want_shape = resample_grid_z(ijk_to_ras(cine_node), shape, factor)
    current = res.cine.n_frames - 1
    res.cine.browser.SetSelectedItemNumber(current)
    old_shape = volume_array_xyz(sequence.GetNthDataNode(current)).shape
    seen = []

    def on_event(event) -> None:
        if event.stage != "preview":
            return
        proxy = res.cine.browser.GetProxyNode(sequence)
        seen.append((volume_array_xyz(proxy), ijk_to_ras(proxy),
                     volume_array_xyz(sequence.GetNthDataNode(current)).shape))

    job = ResampleJob(ctx, res, factor, python, engine_parent, preview_frame=current)
    job.run(on_event, timeout_s=timeout_s)
    _check(len(seen) == 1, f"{len(seen)} preview events, expected 1")
    preview, preview_affine, held_shape = seen[0]
    preview_shape = preview.shape
    _check(preview_shape == tuple(want_shape) and np.allclose(preview_affine, want_affine,
                                                              atol=1e-4),
           f"the preview frame is not on the new grid ({preview_shape} != {want_shape})")
    _check(held_shape == old_shape, "the sequence changed before the whole cine was sampled")
    _check(not any(job.output_dir.glob("preview_*")), "the preview file was kept")
    final = volume_array_xyz(res.cine.browser.GetProxyNode(sequence))
    _check(res.sequences["superres"] is sequence, "a new super-resolved sequence was made")
    _check(res.cine.browser.GetNumberOfSynchronizedSequenceNodes() == n_sync,
           "synchronised sequences changed")
    _check(sequence.GetAttribute(results.RES_FACTOR) == str(factor), "factor attribute")
    _check(np.array_equal(final, volume_array_xyz(sequence.GetNthDataNode(current))),
           "the frame on screen after the resample is not the sequence's frame")
    _check(np.array_equal(final, preview), "the preview differs from the frame it previewed")
    for t in (0, res.cine.n_frames - 1):
        res.cine.browser.SetSelectedItemNumber(t)
        proxy = res.cine.browser.GetProxyNode(sequence)
        _check(volume_array_xyz(proxy).shape == tuple(want_shape),
               f"frame {t}: shape {volume_array_xyz(proxy).shape} != {want_shape}")
        _check(np.allclose(ijk_to_ras(proxy), want_affine, atol=1e-4),
               f"frame {t}: grid is not resample_grid_z(cine, {factor})")


def synchronized_sequences(browser, include_master: bool = False) -> list:
    """The sequences a browser plays (the master first when ``include_master``)."""
    import vtk

    collection = vtk.vtkCollection()
    browser.GetSynchronizedSequenceNodes(collection, include_master)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def _frame_signature(node) -> dict:
    """What identifies one frame's content: segments, voxels, points, geometry."""
    if node.IsA("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        return {"segments": [(segmentation.GetNthSegment(i).GetName(),
                              segmentation.GetNthSegment(i).GetTerminology(),
                              tuple(round(c, 3) for c in segmentation.GetNthSegment(i).GetColor()))
                             for i in range(segmentation.GetNumberOfSegments())],
                "voxels": segments.segment_voxel_counts(node)}
    if node.IsA("vtkMRMLModelNode"):
        poly = node.GetPolyData()
        return {"points": poly.GetNumberOfPoints(),
                "magnitude_max": round(float(glyphs.glyph_magnitudes(poly).max(initial=0)), 4)}
    if node.IsA("vtkMRMLScalarVolumeNode"):
        array = volume_array_xyz(node)
        return {"shape": array.shape, "sum": round(float(array.sum()), 2),
                "ijk_to_ras": np.round(ijk_to_ras(node), 4).tolist()}
    if node.IsA("vtkMRMLTransformNode"):
        grid = node.GetTransformToParentAs("vtkOrientedGridTransform", False)
        if grid is None:
            return {"class": node.GetClassName(), "to_parent_grid": None}
        from vtk.util.numpy_support import vtk_to_numpy

        image = grid.GetDisplacementGrid()
        values = vtk_to_numpy(image.GetPointData().GetScalars())
        return {"to_parent_grid": image.GetDimensions(),
                "origin": tuple(round(v, 4) for v in image.GetOrigin()),
                "abs_sum": round(float(np.abs(values.astype(np.float64)).sum()), 2)}
    if node.IsA("vtkMRMLMarkupsNode"):
        from .tracking import placed_points

        labels, points = placed_points(node)
        return {"labels": labels, "points": np.round(points, 3).tolist()}
    return {"class": node.GetClassName()}


def describe_scene(scene, browser) -> dict:
    """What must survive an .mrb round trip: every sequence the browser plays (index values
    and per-frame content), tables (all values, attributes), plot charts and their series."""
    out: dict = {"browser": browser.GetName(), "sequences": {}, "tables": {}, "charts": {}}
    for sequence in synchronized_sequences(browser, include_master=True):
        out["sequences"][sequence.GetName()] = {
            "index": (sequence.GetIndexName(), sequence.GetIndexUnit()),
            "role": sequence.GetAttribute(results.ROLE),
            "frames": [(sequence.GetNthIndexValue(t), _frame_signature(sequence.GetNthDataNode(t)))
                       for t in range(sequence.GetNumberOfDataNodes())]}
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
        table = scene.GetNthNodeByClass(i, "vtkMRMLTableNode")
        out["tables"][table.GetName()] = (
            {k: v if isinstance(v, list) else
             [None if np.isnan(x) else x for x in np.round(v, 4).tolist()]
             for k, v in curves.table_columns(table).items()},
            table.GetAttribute(results.SUMMARY))
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode")):
        chart = scene.GetNthNodeByClass(i, "vtkMRMLPlotChartNode")
        out["charts"][chart.GetName()] = sorted(
            (chart.GetNthPlotSeriesNode(k).GetYColumnName(),
             chart.GetNthPlotSeriesNode(k).GetTableNode().GetName())
            for k in range(chart.GetNumberOfPlotSeriesNodes()))
    return out


def find_results(ctx, cine: CineNodes) -> results.NimosefResults:
    """Rebuild the results handle of a cine from node attributes (e.g. after loading .mrb)."""
    scene = ctx.scene
    found: dict = {}
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        role = node.GetAttribute(results.ROLE)
        if role and node.GetAttribute(results.INPUT) == cine.sequence.GetID():
            kind = "sequence" if node.IsA("vtkMRMLSequenceNode") else "node"
            found.setdefault((role, kind), node)
    sequences = {r: found[(r, "sequence")]
                 for r in ("segmentation", "superres", "motion", "glyphs")
                 if (r, "sequence") in found}
    _check("segmentation" in sequences and "superres" in sequences and
           ("table", "node") in found and ("chart", "node") in found,
           f"result nodes missing: found {sorted(found)}")
    if "motion" in sequences:  # Slicer reads grid transforms back with cubic interpolation
        motion.use_linear_interpolation(sequences["motion"])
        ctx.sequences_logic.UpdateProxyNodesFromSequences(cine.browser)
    table = found[("table", "node")]
    proxies = {r: cine.browser.GetProxyNode(s) for r, s in sequences.items()}
    out_dir = Path(sequences["segmentation"].GetAttribute(results.OUTPUT_DIR) or ".")
    optional = {r: found.get((r, "node")) for r in ("strain_table", "strain_chart",
                                                    "peak_table")}
    return results.NimosefResults(
        cine, sequences, proxies, table, found[("chart", "node")],
        json.loads(table.GetAttribute(results.SUMMARY)), out_dir,
        int(sequences["superres"].GetAttribute(results.RES_FACTOR) or 1), **optional)


def check_mrb_roundtrip(ctx, browser, mrb_path: str | Path, new_context) -> tuple:
    """Save the scene to ``.mrb``, read it into a fresh context, compare everything that
    :func:`describe_scene` lists. Returns (new context, the browser read back)."""
    mrb_path = Path(mrb_path)
    before = describe_scene(ctx.scene, browser)
    ctx.scene.SetRootDirectory(str(mrb_path.parent))
    _check(ctx.scene.WriteToMRB(str(mrb_path)), f"cannot write {mrb_path}")
    ctx2 = new_context()
    _check(ctx2.scene.ReadFromMRB(str(mrb_path)), f"cannot read {mrb_path}")
    browsers = ctx2.scene.GetNodesByClassByName("vtkMRMLSequenceBrowserNode", browser.GetName())
    _check(browsers.GetNumberOfItems() == 1, "browser missing after reading the .mrb")
    browser2 = browsers.GetItemAsObject(0)
    after = describe_scene(ctx2.scene, browser2)
    for key in before:
        _check(before[key] == after[key], f".mrb round trip changed '{key}'")
    _check(len(before["sequences"]) >= 2, "nothing but the cine to compare")
    return ctx2, browser2


# ----------------------------------------------------------------------------- light self-test
TEST_RESULT_DIR = Path("Resources") / "TestResult"
"""The small real result shipped with the module (relative to the module folder)."""


def light_self_test(ctx, module_dir: str | Path, res_factor_z: int = 2) -> dict:
    """The self-test of the build machines: no torch, no network, seconds. On the small real
    Segment & Track result shipped in ``Resources/TestResult`` (scripts/make_slicer_sample_data
    .py): load its cine with Slicer's sequence reader, import the results in steps, check
    the scene against the files (:func:`check_results`: segmentation, intensities, motion
    transforms, arrows, strain), *Track points* (:func:`check_tracking`), the input filter,
    the CSV export and a re-import; check the shipped sample cine. Returns what it
    measured."""
    import tempfile

    from . import sampledata
    from .cine import input_candidates, input_problem, load_sequence_file
    from .results import ResultsImport

    module_dir = Path(module_dir)
    result_dir = module_dir / TEST_RESULT_DIR
    _check(sampledata.file_sha256(sampledata.SAMPLE_FILE) == sampledata.SAMPLE_SHA256,
           f"{sampledata.SAMPLE_FILE}: checksum differs from the registered one")
    sample = load_sequence_file(ctx, sampledata.SAMPLE_FILE)
    _check(input_problem(ctx, sample.sequence) is None, "the sample cine is not a valid input")
    sample_frames = sample.n_frames

    cine = load_sequence_file(ctx, result_dir / "cine.seq.nrrd", "nimosef_selftest_cine")
    importer = ResultsImport(ctx, cine, result_dir, res_factor_z, "NIMOSEF test")
    start = time.perf_counter()
    importer.read()
    read_s = time.perf_counter() - start
    steps: list[tuple[str, float]] = []
    res = importer.run(steps)
    check_results(ctx, res)
    n_nodes = ctx.scene.GetNumberOfNodes()
    tracked = check_tracking(ctx, res)
    placed = ctx.scene.GetNodeByID(tracked.sequence.GetAttribute(tracking.TRACK_SOURCE))
    n_nodes += 1 + placed.GetNumberOfDisplayNodes()  # the placed list stays

    good, hidden = input_candidates(ctx)
    _check(cine.sequence.GetID() in good and sample.sequence.GetID() in good,
           "a loaded cine is not offered as input")
    for role, sequence in res.sequences.items():
        _check(sequence.GetID() in hidden, f"the {role} result sequence is offered as input")
        _check(res.proxies[role].GetID() not in good, f"the {role} proxy is offered as input")

    with tempfile.TemporaryDirectory() as tmp:
        written = curves.read_volume_curves(curves.export_table_csv(res.table,
                                                                    Path(tmp) / "c.csv"))
    truth = curves.read_volume_curves(result_dir / "volumes.csv")
    for column in ("LV_mL", "MYO_mL", "RV_mL"):
        _check(np.allclose(written[column], truth[column], rtol=0, atol=0.0051),
               f"exported {column} differs from volumes.csv")

    again = ResultsImport(ctx, cine, result_dir, res_factor_z, "NIMOSEF test").run()
    _check(ctx.scene.GetNumberOfNodes() == n_nodes,
           "a re-import did not replace the results (and the points tracked with them)")
    check_results(ctx, again, frames=(0,))
    longest = max(steps, key=lambda s: s[1])
    return {"sample_frames": sample_frames, "frames": cine.n_frames,
            "motion": "motion" in again.sequences, "tracked_points": len(tracked.labels),
            "read_s": round(read_s, 3), "steps": len(steps),
            "longest_step": (longest[0], round(longest[1], 3))}

