"""NRRD sequences: written by Slicer's real storage node, by SimpleITK and by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from io_testdata import CINE_4D, SB_DICOMS

from nimosef_engine.io.cine import Cine, load_cine
from nimosef_engine.io.nifti import save_nifti
from nimosef_engine.io.nrrd import read_nrrd

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML) is needed to write .seq.nrrd")
vtk = pytest.importorskip("vtk")
from vtk.util import numpy_support  # noqa: E402


def write_slicer_sequence(path: Path, cine: Cine, index_values: list[str], unit: str) -> None:
    """Save ``cine`` as a Slicer volume sequence through vtkMRMLVolumeSequenceStorageNode."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkMRMLApplicationLogic()
    app_logic.SetMRMLScene(scene)
    seq_logic = slicer.vtkSlicerSequencesLogic()
    seq_logic.SetMRMLApplicationLogic(app_logic)
    seq_logic.SetMRMLScene(scene)
    app_logic.SetModuleLogic("Sequences", seq_logic)
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    seq.SetIndexName("time")
    seq.SetIndexUnit(unit)
    ijk_to_ras = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            ijk_to_ras.SetElement(r, c, float(cine.affine_ras[r, c]))
    for frame, value in zip(cine.frames, index_values, strict=True):
        image = vtk.vtkImageData()
        image.SetDimensions(*frame.shape)
        flat = np.ascontiguousarray(frame.transpose(2, 1, 0)).ravel()  # x fastest
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=1))
        volume = slicer.vtkMRMLScalarVolumeNode()
        volume.SetAndObserveImageData(image)
        volume.SetIJKToRASMatrix(ijk_to_ras)
        seq.SetDataNodeAtValue(volume, value)
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(seq) == 1


@pytest.fixture(scope="module")
def acdc_cine() -> Cine:
    return load_cine([CINE_4D])


@pytest.fixture(scope="module")
def oblique_cine(tmp_path_factory) -> Cine:
    """The Sunnybrook DICOM cine (oblique geometry) as a source 4D NIfTI."""
    dicom = load_cine([SB_DICOMS])
    path = tmp_path_factory.mktemp("oblique") / "sunnybrook_4d.nii"
    save_nifti(path, np.moveaxis(dicom.frames, 0, -1), dicom.affine_ras)
    return load_cine([path])


@pytest.fixture(params=["acdc", "oblique"])
def source(request, acdc_cine, oblique_cine) -> Cine:
    return {"acdc": acdc_cine, "oblique": oblique_cine}[request.param]


def test_slicer_seq_nrrd_round_trip(tmp_path, source):
    path = tmp_path / "cine.seq.nrrd"
    times_ms = [f"{12.5 + 40 * t:g}" for t in range(source.n_frames)]
    write_slicer_sequence(path, source, times_ms, "ms")
    assert b"kinds: domain domain domain list" in path.read_bytes()[:1000]
    cine = load_cine([path])
    np.testing.assert_array_equal(cine.frames, source.frames)
    np.testing.assert_allclose(cine.affine_ras, source.affine_ras, atol=1e-4)
    t_ms = 12.5 + 40 * np.arange(source.n_frames)
    np.testing.assert_allclose(cine.trigger_times_ms, t_ms)
    np.testing.assert_allclose(cine.frame_times, t_ms / (t_ms[-1] + 40))
    assert cine.n_frames_cycle == source.n_frames


def test_slicer_sequence_with_frame_index_has_no_trigger_times(tmp_path, acdc_cine):
    path = tmp_path / "frames.seq.nrrd"
    write_slicer_sequence(path, acdc_cine, [str(t) for t in range(12)], "")
    cine = load_cine([path])
    assert cine.trigger_times_ms is None
    np.testing.assert_allclose(cine.frame_times, np.arange(12) / 12)
    np.testing.assert_array_equal(cine.frames, acdc_cine.frames)


def test_seconds_unit_is_converted_to_ms(tmp_path, acdc_cine):
    path = tmp_path / "sec.seq.nrrd"
    write_slicer_sequence(path, acdc_cine, [f"{0.05 * t:g}" for t in range(12)], "s")
    vol = read_nrrd(path)
    assert vol.data.shape == (154, 224, 7, 12) and vol.index_unit == "s"
    np.testing.assert_allclose(vol.trigger_times_ms(), 50.0 * np.arange(12))


def test_simpleitk_plain_4d_nrrd_round_trip(tmp_path, source):
    a_lps = np.diag([-1.0, -1.0, 1.0]) @ source.affine_ras[:3, :3]
    spacing = np.linalg.norm(a_lps, axis=0)
    direction = np.eye(4)
    direction[:3, :3] = a_lps / spacing
    image = sitk.GetImageFromArray(source.frames.transpose(0, 3, 2, 1), isVector=False)
    image.SetSpacing([*spacing.tolist(), 40.0])
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin([*(source.affine_ras[:3, 3] * [-1, -1, 1]).tolist(), 0.0])
    path = tmp_path / "plain4d.nrrd"
    sitk.WriteImage(image, str(path), useCompression=True)
    cine = load_cine([path])
    np.testing.assert_array_equal(cine.frames, source.frames)
    np.testing.assert_allclose(cine.affine_ras, source.affine_ras, atol=1e-4)
    np.testing.assert_allclose(cine.frame_times, np.arange(source.n_frames) / source.n_frames)


def test_hand_written_ras_space_nrrd(tmp_path, oblique_cine):
    """A minimal header in RAS space with the list axis last and raw data."""
    src = oblique_cine
    a = src.affine_ras
    vec = " ".join("({:.9g},{:.9g},{:.9g})".format(*a[:3, i]) for i in range(3))
    header = (
        "NRRD0004\ntype: float\ndimension: 4\nspace: right-anterior-superior\n"
        f"sizes: {' '.join(str(s) for s in src.shape)} {src.n_frames}\n"
        f"space directions: {vec} none\nkinds: domain domain domain list\n"
        "endian: little\nencoding: raw\n"
        "space origin: ({:.9g},{:.9g},{:.9g})\n\n".format(*a[:3, 3])
    )
    raw = np.ascontiguousarray(src.frames.transpose(0, 3, 2, 1), dtype="<f4").tobytes()
    path = tmp_path / "by_hand.nrrd"
    path.write_bytes(header.encode() + raw)
    cine = load_cine([path])
    np.testing.assert_array_equal(cine.frames, src.frames)
    np.testing.assert_allclose(cine.affine_ras, src.affine_ras, atol=1e-4)
    assert cine.trigger_times_ms is None
