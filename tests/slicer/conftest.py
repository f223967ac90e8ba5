"""Fixtures for the Slicer scene tests: a real MRML scene (slicer-core), the sample cine, and
one real ``segment-track`` run of the engine shared by the whole session."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "NimosefSlicer"
DATA = REPO / "tests" / "data"
ACDC_090 = DATA / "acdc" / "patient090"
SAMPLE_CINE = ACDC_090 / "patient090_4d.nii.gz"
TEST_PRIOR_ENV = "NIMOSEF_TEST_PRIOR"  # a prior checkpoint to use instead of the bundled one

if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def _import_slicer_without_tests_on_path() -> None:
    """Import slicer-core's ``slicer`` package while ``tests/`` is off ``sys.path``.

    ``slicer/__init__.py`` extends its package path with every folder named ``slicer`` on
    ``sys.path`` and imports all modules in them. With ``tests/`` on ``sys.path`` (pytest puts
    it there for ``tests/conftest.py``) that would be this folder: the test modules would be
    imported as ``slicer.test_*`` in the middle of ``import slicer``.
    """
    tests_dir = (REPO / "tests").resolve()
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != tests_dir]
    try:
        import slicer  # noqa: F401
    finally:
        sys.path[:] = saved


_import_slicer_without_tests_on_path()
if not os.environ.get("DISPLAY"):
    # headless: VTK's offscreen EGL window (Mesa) instead of trying an X server first
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@pytest.fixture
def ctx():
    """A fresh headless scene with the module logics registered."""
    from NimosefSlicerLib.context import create_headless_context

    context = create_headless_context()
    yield context
    context.scene.Clear(1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root: the folder that holds the ``nimosef_engine`` package."""
    return REPO


@pytest.fixture(scope="session")
def test_prior() -> str | None:
    """A prior checkpoint from ``$NIMOSEF_TEST_PRIOR``; None means the bundled prior."""
    return os.environ.get(TEST_PRIOR_ENV) or None


@pytest.fixture
def resample_available() -> None:
    reason = resample_missing_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def acdc_090() -> Path:
    """ACDC patient090: the 4D cine, ED (frame 4) and ES (frame 11) images and labels."""
    return ACDC_090


@pytest.fixture(scope="session")
def sample_cine() -> Path:
    assert SAMPLE_CINE.is_file(), f"sample cine missing: {SAMPLE_CINE}"
    return SAMPLE_CINE


def segment_track_missing_reason() -> str | None:
    """Why the engine's segment-track cannot run yet (None once it exists)."""
    from nimosef_engine import cli

    if "segment_track" not in cli.COMMANDS:
        return "nimosef_engine.cli.COMMANDS has no segment_track"
    for module in ("nimosef_engine.pipeline.segment_track",
                   "nimosef_engine.commands.segment_track"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not written yet"
    if not os.environ.get(TEST_PRIOR_ENV):
        from nimosef_engine.model.bundled import BUNDLED_PRIOR

        if not BUNDLED_PRIOR.is_file():
            return (f"the bundled prior {BUNDLED_PRIOR} is not in the repository yet "
                    f"(or set {TEST_PRIOR_ENV} to a prior checkpoint)")
    return None


def resample_missing_reason() -> str | None:
    from nimosef_engine import cli

    if "resample" not in cli.COMMANDS or \
            importlib.util.find_spec("nimosef_engine.commands.resample") is None:
        return "nimosef_engine.commands.resample is not written yet"
    return None


@pytest.fixture(scope="session")
def engine_run(tmp_path_factory, sample_cine):
    """One real ``python -m nimosef_engine segment-track --quality fast`` on the sample cine,
    run through the module's own runner (export -> process -> JSON progress).

    Skipped, with the reason, only while the engine has no segment-track command or no
    prior to fit with. Returns ``(output_dir, progress_events, seconds)``.
    """
    reason = segment_track_missing_reason()
    if reason:
        pytest.skip(f"engine segment-track not available yet: {reason}")
    from NimosefSlicerLib.cine import load_cine_file
    from NimosefSlicerLib.context import create_headless_context
    from NimosefSlicerLib.runner import SegmentTrackOptions
    from NimosefSlicerLib.workflow import SegmentTrackJob

    work = tmp_path_factory.mktemp("engine_run")
    context = create_headless_context(with_io=False)
    cine = load_cine_file(context, sample_cine)
    start = time.monotonic()
    job_events: list = []
    options = SegmentTrackOptions(res_factor_z=2, quality="fast", device="cpu",
                                  prior=os.environ.get(TEST_PRIOR_ENV) or None)
    job = SegmentTrackJob(context, cine, options,
                          sys.executable, str(REPO), work)
    job.start()
    code = job.process.wait(job_events.append, timeout_s=900)
    assert code == 0, f"segment-track failed: {job.process.error_message()}\n" + \
        "\n".join(job.process.log)
    seconds = time.monotonic() - start
    context.scene.Clear(1)
    return job.out_dir, job_events, seconds


@pytest.fixture
def imported(ctx, engine_run, sample_cine):
    """The sample cine and the engine's results imported into a fresh scene."""
    from NimosefSlicerLib.cine import load_cine_file
    from NimosefSlicerLib.results import import_results

    out_dir, _, _ = engine_run
    cine = load_cine_file(ctx, sample_cine)
    return import_results(ctx, cine, out_dir, 2)


ACDC_TO_NIMOSEF = np.array([0, 3, 2, 1], dtype=np.uint8)  # ACDC 1 RV, 2 MYO, 3 LV


def boundary_points(labels: np.ndarray, label: int) -> np.ndarray:
    """Voxel indices (N, 3) of ``label`` voxels with a differently labelled 6-neighbour."""
    from scipy import ndimage

    mask = labels == label
    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))
    return np.argwhere(mask & ~inner)


@pytest.fixture
def gt_scene(ctx, acdc_090):
    """A 2-frame cine (ACDC patient090 ED and ES images) with its expert segmentation as a
    synchronised segmentation sequence, and arrows from each ED myocardium boundary point to
    its nearest boundary point at ES (real motion by nearest-point correspondence)."""
    from NimosefSlicerLib.cine import add_cine
    from NimosefSlicerLib.results import add_glyph_sequence, add_segmentation_sequence
    from scipy.spatial import cKDTree

    from nimosef_engine.core.geometry import voxel_to_ras
    from nimosef_engine.io.nifti import load_nifti

    images, labels = [], []
    for frame in ("04", "11"):
        img, affine = load_nifti(acdc_090 / f"patient090_frame{frame}.nii.gz", ndim=3)
        gt, gt_affine = load_nifti(acdc_090 / f"patient090_frame{frame}_gt.nii.gz", ndim=3,
                                   dtype=np.uint8)
        np.testing.assert_allclose(gt_affine, affine)
        images.append(img)
        labels.append(ACDC_TO_NIMOSEF[gt])
    frames = np.stack(images, -1)
    labels_xyzt = np.stack(labels, -1)
    cine = add_cine(ctx, frames, affine, "patient090_ed_es")
    seg_sequence, _ = add_segmentation_sequence(ctx, cine, labels_xyzt, affine, "GT")
    ed = voxel_to_ras(affine, boundary_points(labels_xyzt[..., 0], 2))
    es = voxel_to_ras(affine, boundary_points(labels_xyzt[..., 1], 2))
    _, nearest = cKDTree(es).query(ed)
    motion = {0: (ed, np.zeros_like(ed)), 1: (es[nearest], es[nearest] - ed)}
    glyph_sequence, _ = add_glyph_sequence(ctx, cine, motion, "GT arrows")
    return {"cine": cine, "labels": labels_xyzt, "affine": affine, "motion": motion,
            "segmentation": seg_sequence, "glyphs": glyph_sequence}
