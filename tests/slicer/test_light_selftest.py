"""The light self-test of the build machines, the files it relies on, and the sample data.

``scenarios.light_self_test`` is what ``NimosefSlicerTest`` runs in Slicer on the build
machines (no torch, no network). Here it runs in-process, and in a child Python where every
package that Slicer does not ship (torch, nibabel, pyarrow, pandas, scipy, ...) cannot be
imported, as on those machines.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from NimosefSlicerLib import results, sampledata, scenarios
from NimosefSlicerLib.cine import ijk_to_ras, load_sequence_file, volume_array_xyz

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "NimosefSlicer"
TEST_RESULT = MODULE_DIR / "Resources" / "TestResult"
NOT_IN_SLICER = ("torch", "nibabel", "pyarrow", "pandas", "scipy", "matplotlib", "tqdm", "yaml")
MAX_GUI_STEP_S = 0.5


def test_light_self_test_passes_and_every_gui_step_is_short(ctx):
    report = scenarios.light_self_test(ctx, MODULE_DIR)
    print(f"light self-test: {report}")
    assert report["motion"] is True and report["tracked_points"] == 6
    assert report["frames"] == 3 and report["sample_frames"] == 12
    assert report["longest_step"][1] < MAX_GUI_STEP_S, report


BLOCKER = textwrap.dedent('''
    import importlib.abc, os, sys, time
    BLOCKED = set(os.environ["NIMOSEF_BLOCKED"].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    import importlib.util
    _find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: (
        None if name.split(".")[0] in BLOCKED else _find_spec(name, *a))
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    sys.path.insert(0, os.environ["NIMOSEF_MODULE_DIR"])
    start = time.perf_counter()
    from NimosefSlicerLib.context import create_headless_context
    from NimosefSlicerLib import scenarios
    report = scenarios.light_self_test(create_headless_context(),
                                       os.environ["NIMOSEF_MODULE_DIR"])
    for name in BLOCKED:
        assert name not in sys.modules, f"{name} was imported"
    print("REPORT", report, round(time.perf_counter() - start, 2))
''')


def test_light_self_test_runs_with_only_what_slicer_ships(tmp_path):
    """No torch, nibabel, pyarrow, pandas, scipy...: NIfTI and motion fields through SimpleITK,
    strain through csv; motion, arrows and tracking checked too; the whole test in seconds."""
    import os

    env = dict(os.environ, NIMOSEF_BLOCKED=",".join(NOT_IN_SLICER),
               NIMOSEF_MODULE_DIR=str(MODULE_DIR), PYTHONPATH=str(REPO))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", BLOCKER], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    seconds = time.monotonic() - start
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("REPORT"))
    print(f"{line} (child process: {seconds:.1f} s)")
    assert "'motion': True" in line and "'tracked_points': 6" in line
    assert seconds < 120


def test_simpleitk_reader_matches_the_engine_reader():
    """The fallback reader of a bare Slicer gives the engine's voxels and geometry."""
    from nimosef_engine.io.nifti import load_nifti

    for name, dtype in (("seg.nii.gz", np.uint8), ("rec_z2.nii.gz", np.float32)):
        want, want_affine = load_nifti(TEST_RESULT / name, ndim=4, dtype=dtype)
        got, got_affine = results._read_nifti_sitk(TEST_RESULT / name, 4, dtype)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got_affine, want_affine, atol=1e-5)
    from NimosefSlicerLib import motion

    from nimosef_engine.motion.fields import read_itk_field_ras

    ed = results.motion_ed_frame(results.read_summary(TEST_RESULT))
    for frame in range(3):  # the motion fields: the engine's reader gives the same RAS mm
        path = motion.field_path(TEST_RESULT, frame)
        want, want_affine = read_itk_field_ras(path)
        got, got_affine = motion.read_displacement_field(path)
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(got_affine, want_affine, atol=1e-6)
        assert (np.abs(got).max() > 1.0) == (frame != ed)  # no motion at ED only


def test_sample_cine_is_the_demo_cine_with_its_registered_checksum(ctx):
    """Slicer's sequence reader gives exactly the engine's reading of the ACDC NIfTI."""
    from nimosef_engine.io.nifti import load_nifti

    assert sampledata.file_sha256(sampledata.SAMPLE_FILE) == sampledata.SAMPLE_SHA256
    cine = load_sequence_file(ctx, sampledata.SAMPLE_FILE)
    data, affine = load_nifti(REPO / "tests/data/acdc/patient090/patient090_4d.nii.gz", ndim=4)
    assert cine.n_frames == data.shape[3]
    for t in range(cine.n_frames):
        node = cine.sequence.GetNthDataNode(t)
        np.testing.assert_array_equal(volume_array_xyz(node), data[..., t])
        np.testing.assert_allclose(ijk_to_ras(node), affine, atol=1e-4)
    source = sampledata.sample_source()
    assert source["uris"].startswith("file://") and source["uris"].endswith(
        source["fileNames"])
    assert Path(source["thumbnailFileName"]).is_file()
    assert source["checksums"] == f"SHA256:{sampledata.SAMPLE_SHA256}"
    assert source["loadFileType"] == "SequenceFile"


def test_test_result_is_small_and_its_provenance_is_true():
    files = [p for p in TEST_RESULT.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024
    provenance = (TEST_RESULT / "PROVENANCE.md").read_text(encoding="utf-8")
    rows = re.findall(r"\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|", provenance)
    assert {r[0] for r in rows} == \
        {p.relative_to(TEST_RESULT).as_posix() for p in files} - {"PROVENANCE.md"}
    for name, size, digest in rows:
        data = (TEST_RESULT / name).read_bytes()
        assert len(data) == int(size) and hashlib.sha256(data).hexdigest() == digest, name
    config = json.loads((TEST_RESULT / "config.json").read_text(encoding="utf-8"))
    assert config.get("quality") == "fast", config
    assert "scripts/make_slicer_sample_data.py" in provenance


def test_requirements_state_the_engine_minimums():
    """requirements.txt (what the module installs) = pyproject's dependencies, less what
    Slicer ships itself."""
    from NimosefSlicerLib import deps

    reqs = {r.name: r.minimum for r in deps.read_requirements(
        MODULE_DIR / "Resources" / "requirements.txt")}
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    block = pyproject[pyproject.index("dependencies = ["):]
    block = block[:block.index("]")]
    engine = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', block))
    shipped_by_slicer = {"SimpleITK", "vtk"}
    assert set(reqs) == set(engine) - shipped_by_slicer
    assert all(reqs[name] == engine[name] for name in reqs)
    assert reqs["torch"] == "2.2"


def test_catalog_layout_snapshot_shows_views_chart_and_panel(ctx, tmp_path):
    """The screenshot's layout on a real (small) result: module panel text on the left, the
    LV overlay colour in the short-axis view, the curves in the chart tile."""
    import vtk
    from NimosefSlicerLib import offscreen, segments
    from vtk.util.numpy_support import vtk_to_numpy

    cine = load_sequence_file(ctx, TEST_RESULT / "cine.seq.nrrd")
    res = results.ResultsImport(ctx, cine, TEST_RESULT, 2).run()
    view, panel = (300, 220), 200
    lines = ["# NIMOSEF", f"LV EF: {res.summary['LV_EF_pct']:.1f} %"]
    path = offscreen.slicer_layout_snapshot(ctx, res, tmp_path / "shot.png",
                                            int(res.summary["es_frame"]), lines, view, panel)
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    w, h, _ = reader.GetOutput().GetDimensions()
    assert (w, h) == (panel + 2 * view[0] + 4, 34 + 2 * view[1] + 4)
    rgb = vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars()).reshape(h, w, -1)[::-1]
    lv = np.array(segments.segment_specs()[0].color) * 255
    body = rgb[34:]
    red_view = body[:view[1], panel:panel + view[0], :3].astype(float)
    chart = body[view[1] + 4:, panel + view[0] + 4:, :3].astype(float)
    assert (np.abs(red_view - lv).max(-1) < 60).sum() > 30, "no LV overlay in the slice view"
    assert (np.abs(chart - lv).max(-1) < 60).sum() > 30, "no LV curve in the chart"
    text = body[:, :panel, :3].astype(int)
    assert (np.abs(text - text[-1, -1]).sum(-1) > 200).sum() > 50, "no panel text"
