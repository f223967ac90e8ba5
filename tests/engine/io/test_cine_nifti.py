"""load_cine on NIfTI inputs: a real 4D ACDC cine and ED/ES frame pairs."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from io_testdata import ACDC, CINE_4D, P090, read_info_cfg

from nimosef_engine.core.geometry import nifti_affine_ras, voxel_to_ras
from nimosef_engine.io.cine import Cine, load_cine
from nimosef_engine.io.nifti import save_nifti


@pytest.fixture(scope="module")
def cine4d() -> Cine:
    return load_cine([CINE_4D])


def test_4d_nifti_shape_times_and_true_spacing(cine4d):
    assert cine4d.frames.shape == (12, 154, 224, 7)
    assert cine4d.frames.dtype == np.float32
    np.testing.assert_allclose(cine4d.frame_times, np.arange(12) / 12)
    np.testing.assert_array_equal(cine4d.frame_indices, np.arange(12))
    assert cine4d.n_frames_cycle == 12
    assert cine4d.trigger_times_ms is None
    # ACDC header trap: sform says 1 mm, pixdim holds 1.78571 x 1.78571 x 10 mm
    np.testing.assert_allclose(cine4d.spacing_mm, [1.78571, 1.78571, 10.0], atol=1e-4)
    far = voxel_to_ras(cine4d.affine_ras, np.array([[153, 223, 6]]))[0]
    np.testing.assert_allclose(far, [-153 * 1.78571, -223 * 1.78571, 60.0], atol=1e-2)
    assert str(CINE_4D) in cine4d.source


def test_4d_nifti_frames_equal_the_file(cine4d):
    img = nib.load(str(CINE_4D))
    raw = np.asarray(img.dataobj, dtype=np.float32)
    np.testing.assert_array_equal(cine4d.frames[5], raw[..., 5])
    np.testing.assert_allclose(cine4d.affine_ras, nifti_affine_ras(img))


def test_ed_es_pair_with_frame_numbers_matches_4d(cine4d):
    info = read_info_cfg(P090)
    ed, es, nb = int(info["ED"]), int(info["ES"]), int(info["NbFrame"])
    files = [P090 / f"patient090_frame{ed:02d}.nii.gz", P090 / f"patient090_frame{es:02d}.nii.gz"]
    cine = load_cine(files, frame_numbers=[ed, es], n_frames=nb)
    assert cine.frames.shape == (2, 154, 224, 7)
    np.testing.assert_allclose(cine.frame_times, [0.0, (es - ed) / nb])  # [0, 7/12]
    np.testing.assert_array_equal(cine.frame_indices, [ed - 1, es - 1])
    assert cine.n_frames_cycle == nb == 12
    # the ED/ES files are frames 4 and 11 of the full cine, on the same grid
    np.testing.assert_allclose(cine.frames[0], cine4d.frames[ed - 1], atol=1e-3)
    np.testing.assert_allclose(cine.frames[1], cine4d.frames[es - 1], atol=1e-3)
    np.testing.assert_allclose(cine.affine_ras, cine4d.affine_ras, atol=1e-4)


@pytest.mark.parametrize("patient", ["patient001", "patient080"])
def test_ed_es_frame_times_from_info_cfg(patient):
    folder = ACDC / patient
    info = read_info_cfg(folder)
    ed, es, nb = int(info["ED"]), int(info["ES"]), int(info["NbFrame"])
    files = [folder / f"{patient}_frame{n:02d}.nii.gz" for n in (ed, es)]
    cine = load_cine(files, frame_numbers=[ed, es], n_frames=nb)
    expected = {"patient001": 11 / 30, "patient080": 9 / 21}[patient]
    np.testing.assert_allclose(cine.frame_times, [0.0, expected])
    np.testing.assert_array_equal(cine.frame_indices, [ed - 1, es - 1])
    assert cine.n_frames_cycle == nb


def test_frames_in_es_ed_order_wrap_around_the_cycle():
    files = [P090 / "patient090_frame11.nii.gz", P090 / "patient090_frame04.nii.gz"]
    cine = load_cine(files, frame_numbers=[11, 4], n_frames=12)
    np.testing.assert_allclose(cine.frame_times, [0.0, 5 / 12])
    np.testing.assert_array_equal(cine.frame_indices, [10, 3])


def test_explicit_frame_times_and_even_spacing_warning(caplog):
    files = [P090 / "patient090_frame04.nii.gz", P090 / "patient090_frame11.nii.gz"]
    cine = load_cine(files, frame_times=[0.0, 0.6], n_frames=10)
    np.testing.assert_allclose(cine.frame_times, [0.0, 0.6])
    np.testing.assert_array_equal(cine.frame_indices, [0, 6])
    assert cine.n_frames_cycle == 10
    with caplog.at_level(logging.WARNING, logger="nimosef_engine.io.cine"):
        even = load_cine(files)
    np.testing.assert_allclose(even.frame_times, [0.0, 0.5])
    assert any("evenly spaced" in r.getMessage() for r in caplog.records)


def test_4d_with_partial_cycle_and_time_unit(tmp_path, cine4d):
    part = load_cine([CINE_4D], n_frames=24)
    np.testing.assert_allclose(part.frame_times, np.arange(12) / 24)
    assert part.n_frames_cycle == 24
    # a 4D NIfTI whose header states the frame interval in ms gives trigger times
    path = tmp_path / "cine_ms.nii"
    save_nifti(path, np.moveaxis(cine4d.frames[:3], 0, -1), cine4d.affine_ras, time_spacing=38.5)
    timed = load_cine([path])
    np.testing.assert_allclose(timed.trigger_times_ms, [0.0, 38.5, 77.0])
    np.testing.assert_allclose(timed.frame_times, [0.0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(timed.affine_ras, cine4d.affine_ras, atol=1e-5)
