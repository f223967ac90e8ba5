"""DICOM cine reading on the real Sunnybrook subset (files 101-160: 3 slices x 20 phases)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from io_testdata import SB_DICOMS

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import voxel_to_ras
from nimosef_engine.io.cine import Cine, load_cine
from nimosef_engine.io.dicom import scan_dicom_cine

N_PHASES = 20
FIRST_FILE = 101


def header(path: Path, tag: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetMetaData(tag).strip()


def floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split("\\")])


@pytest.fixture(scope="module")
def cine() -> Cine:
    return load_cine([SB_DICOMS])


@pytest.fixture(scope="module")
def layout():
    return scan_dicom_cine(SB_DICOMS)


def test_shape_frames_and_spacing(cine):
    assert cine.frames.shape == (N_PHASES, 256, 256, 3)
    assert cine.n_frames_cycle == N_PHASES
    np.testing.assert_array_equal(cine.frame_indices, np.arange(N_PHASES))
    np.testing.assert_allclose(cine.spacing_mm, [1.367188, 1.367188, 10.0], atol=1e-4)
    assert "2.16.124.113543.6006.99.08975550791105350405" in cine.source


def test_slice_order_along_normal_and_origin(cine, layout):
    # files 141-160 lie furthest along -normal, so they are slice k = 0
    assert [row[0].name for row in layout.files] == ["141.dcm", "121.dcm", "101.dcm"]
    orient = floats(header(SB_DICOMS / "141.dcm", "0020|0037"))
    normal_lps = np.cross(orient[:3], orient[3:])
    ipp = {n: floats(header(SB_DICOMS / f"{n}.dcm", "0020|0032")) for n in (101, 121, 141)}
    np.testing.assert_allclose(np.diff([ipp[n] @ normal_lps for n in (141, 121, 101)]),
                               [10.0, 10.0], atol=1e-3)
    # RAS of voxel (0,0,0) = LPS ImagePositionPatient of the first slice with x, y negated
    origin = voxel_to_ras(cine.affine_ras, np.zeros((1, 3)))[0]
    np.testing.assert_allclose(origin, ipp[141] * [-1, -1, 1], atol=1e-4)
    np.testing.assert_allclose(origin, [-209.708, 11.0335, 121.848], atol=1e-4)
    # voxel (0, 0, k) sits on slice k's ImagePositionPatient; i runs along the DICOM row
    corners = voxel_to_ras(cine.affine_ras, np.array([[0, 0, 1], [0, 0, 2], [1, 0, 0]]))
    np.testing.assert_allclose(corners[0], ipp[121] * [-1, -1, 1], atol=1e-3)
    np.testing.assert_allclose(corners[1], ipp[101] * [-1, -1, 1], atol=1e-3)
    np.testing.assert_allclose(corners[2] - origin, orient[:3] * [-1, -1, 1] * 1.367188,
                               atol=1e-5)
    assert np.linalg.det(cine.affine_ras[:3, :3]) > 0


def test_matches_simpleitk_series_reader(cine, layout):
    """An independent reader of phase 0 gives the same geometry and pixels."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(row[0]) for row in layout.files])
    img = reader.Execute()
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    direction = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(cine.affine_ras[:3, :3],
                               lps_to_ras @ direction * np.array(img.GetSpacing()), atol=1e-4)
    np.testing.assert_allclose(cine.affine_ras[:3, 3], lps_to_ras @ img.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(cine.frames[0], sitk.GetArrayFromImage(img).T)


def test_frame_is_trigger_rank_within_slice(cine, layout):
    for n in range(FIRST_FILE, FIRST_FILE + 60):
        k, t = layout.index_of(SB_DICOMS / f"{n}.dcm")
        file_slice, file_phase = (n - 1) // N_PHASES, (n - 1) % N_PHASES
        assert (k, t) == (7 - file_slice, file_phase)
    pix = sitk.GetArrayFromImage(sitk.ReadImage(str(SB_DICOMS / "108.dcm")))[0]
    np.testing.assert_array_equal(cine.frames[7, :, :, 2], pix.T)


def test_trigger_times_and_cycle_fractions(cine):
    trig = np.array([[float(header(SB_DICOMS / f"{s * 20 + p + 1}.dcm", "0018|1060"))
                      for p in range(N_PHASES)] for s in (5, 6, 7)])
    # trigger times differ from slice to slice: 18.75 ms vs 18.987 ms at phase 0
    assert trig[0, 0] == pytest.approx(18.75) and trig[1, 0] == pytest.approx(18.9873409)
    mean = trig.mean(axis=0)
    np.testing.assert_allclose(cine.trigger_times_ms, mean, atol=1e-6)
    cycle = mean[-1] + (mean[-1] - mean[0]) / (N_PHASES - 1)
    np.testing.assert_allclose(cine.frame_times, mean / cycle, atol=1e-9)
    assert 0.02 < cine.frame_times[0] < 0.03 and cine.frame_times[-1] < 1.0


def _write_series_copy(src: list[Path], out: Path, uid: str, description: str,
                       drop_trigger: bool = False) -> None:
    """Rewrite real Sunnybrook files with another SeriesInstanceUID (and no trigger time)."""
    for path in src:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        img = reader.Execute()
        img.SetMetaData("0020|000e", uid)
        img.SetMetaData("0008|103e", description)
        if drop_trigger:
            img.EraseMetaData("0018|1060")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(out / f"{description}_{path.name}"))
        writer.Execute(img)


def test_several_cine_series_need_a_choice(tmp_path):
    for path in SB_DICOMS.glob("*.dcm"):
        (tmp_path / path.name).symlink_to(path)
    other = [SB_DICOMS / f"{n}.dcm" for n in (101, 102, 121, 122)]
    _write_series_copy(other, tmp_path, "1.2.826.0.1.3680043.2.1125.77", "copy")
    with pytest.raises(NimosefInputError) as err:
        load_cine([tmp_path])
    msg = str(err.value)
    assert str(tmp_path) in msg and "2 cine series" in msg and "series=" in msg
    assert "1.2.826.0.1.3680043.2.1125.77 'copy' (4 files)" in msg
    assert "2.16.124.113543.6006.99.08975550791105350405 'no description' (60 files)" in msg
    picked = load_cine([tmp_path], series="copy")
    assert picked.frames.shape == (2, 256, 256, 2)
    by_uid = load_cine([tmp_path], series="2.16.124.113543.6006.99.08975550791105350405")
    assert by_uid.frames.shape == (20, 256, 256, 3)
    by_index = load_cine([tmp_path], series=1)  # sorted by description: "" before "copy"
    assert by_index.frames.shape == (2, 256, 256, 2)
    with pytest.raises(NimosefInputError, match="matches no series"):
        load_cine([tmp_path], series="LAX 4ch")


def test_non_cine_series_is_ignored_beside_one_cine(tmp_path):
    for path in SB_DICOMS.glob("*.dcm"):
        (tmp_path / path.name).symlink_to(path)
    _write_series_copy([SB_DICOMS / "101.dcm"], tmp_path, "1.2.826.0.1.3680043.2.1125.78",
                       "localizer", drop_trigger=True)
    (tmp_path / "notes.txt").write_text("not a DICOM file")
    assert load_cine([tmp_path]).frames.shape == (20, 256, 256, 3)


def test_list_of_dicom_files(tmp_path):
    files = sorted(SB_DICOMS.glob("*.dcm"))[:40]  # slices of files 101-140
    cine = load_cine(files)
    assert cine.frames.shape == (20, 256, 256, 2)
    assert [p.name for p in scan_dicom_cine(files).files[0][:2]] == ["121.dcm", "122.dcm"]


def test_single_slice_cine_uses_slice_spacing_tag(tmp_path, cine):
    for n in range(141, 161):
        shutil.copy(SB_DICOMS / f"{n}.dcm", tmp_path)
    single = load_cine([tmp_path])
    assert single.frames.shape == (20, 256, 256, 1)
    np.testing.assert_array_equal(single.frames[..., 0], cine.frames[..., 0])
    np.testing.assert_allclose(single.affine_ras[:3, 3], cine.affine_ras[:3, 3], atol=1e-6)
    np.testing.assert_allclose(single.spacing_mm, [1.367188, 1.367188, 10.0], atol=1e-4)
