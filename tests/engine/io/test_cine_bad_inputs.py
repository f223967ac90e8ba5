"""Malformed inputs: each raises NimosefInputError naming the file and the problem."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from io_testdata import CINE_4D, P090, SB_DICOMS

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.io.cine import load_cine

ED = P090 / "patient090_frame04.nii.gz"
ES = P090 / "patient090_frame11.nii.gz"


@functools.lru_cache(maxsize=1)
def ed_frame() -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(ED))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine.copy()


def write_nii(path: Path, data: np.ndarray, zooms=None, affine=None) -> Path:
    img = nib.Nifti1Image(data, ed_frame()[1] if affine is None else affine)
    img.header.set_zooms(zooms or nib.load(str(ED)).header.get_zooms()[: data.ndim])
    nib.save(img, str(path))
    return path


def write_nrrd_4d(path: Path, frames_xyzt: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(np.transpose(frames_xyzt, (3, 2, 1, 0)), isVector=False)
    image.SetSpacing((1.5, 1.5, 8.0, 40.0))
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


# Each builder gets a fresh folder and returns (inputs, load_cine kwargs, named path, problem).
Case = Callable[[Path], tuple[list[Path], dict, Path | str, str]]


def missing_file(tmp):
    p = tmp / "nope.nii.gz"
    return [p, ES], {}, p, "file not found"


def garbage_nifti(tmp):
    p = tmp / "garbage.nii"
    p.write_bytes(b"this is a text file, not an image\n" * 20)
    return [p, ES], {}, p, "not a readable NIfTI file"


def truncated_gzip(tmp):
    p = tmp / "truncated.nii.gz"
    p.write_bytes(ED.read_bytes()[:60_000])
    return [p, ES], {}, p, "ended before the end-of-stream marker"


def not_gzip_magic(tmp):
    p = tmp / "plain.nii.gz"
    p.write_bytes(nib.Nifti1Image(ed_frame()[0], ed_frame()[1]).to_bytes())
    return [p, ES], {}, p, "is not a gzip file"


def nrrd_wrong_magic(tmp):
    p = tmp / "cine.seq.nrrd"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return [p], {}, p, "not a NRRD file: wrong magic"


def nrrd_truncated(tmp):
    full = write_nrrd_4d(tmp / "full.nrrd", np.random.default_rng(0).random((20, 20, 4, 3)))
    p = tmp / "cut.nrrd"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return [p], {}, p, "not a readable NRRD file"


def directory_among_files(tmp):
    d = tmp / "frames"
    d.mkdir()
    return [ED, d], {}, d, "is a directory where a file is expected"


def image_2d(tmp):
    p = write_nii(tmp / "slice2d.nii", ed_frame()[0][:, :, 3])
    return [p, ES], {}, p, "expected a 3D or 4D image, got 2D"


def single_frame(tmp):
    return [ED], {}, ED, "segment-track needs >= 2 frames"


def single_time_point_4d(tmp):
    p = write_nii(tmp / "one_tp.nii", ed_frame()[0][..., None], zooms=(1.78571, 1.78571, 10, 1))
    return [p], {}, p, "single 3D frame"


def different_shapes(tmp):
    p = write_nii(tmp / "cropped.nii", ed_frame()[0][:150])
    return [ED, p], {}, p, "frame shape (150, 224, 7) differs from (154, 224, 7)"


def different_geometry(tmp):
    affine = ed_frame()[1].copy()
    affine[2, 3] += 5.0  # shifted by 5 mm along the stack
    p = write_nii(tmp / "shifted.nii", ed_frame()[0], affine=affine)
    return [ED, p], {}, p, "frame geometry (affine) differs"


def nan_values(tmp):
    data = ed_frame()[0].copy()
    data[70, 100, 3] = np.nan
    p = write_nii(tmp / "nan.nii", data)
    return [ED, p], {}, p, "NaN or infinite"


def inf_values_nrrd(tmp):
    data = np.random.default_rng(1).random((20, 20, 4, 3)).astype(np.float32)
    data[5, 5, 1, 2] = np.inf
    p = write_nrrd_4d(tmp / "inf.nrrd", data)
    return [p], {}, f"{p} (frame 2)", "frame 2 contains NaN or infinite values"


def constant_frame(tmp):
    p = write_nii(tmp / "blank.nii", np.zeros_like(ed_frame()[0]))
    return [ED, p], {}, p, "frame 1 is a constant image (all 0)"


def zero_size_dimension(tmp):
    p = write_nii(tmp / "empty.nii", np.zeros((0, 224, 7), np.float32))
    return [ED, p], {}, p, "zero-size dimension"


def absurd_spacing(tmp):
    p = write_nii(tmp / "huge.nii", ed_frame()[0], zooms=(1.78571, 1.78571, 500.0))
    return [p, ES], {}, p, "absurd voxel spacing"


def several_4d(tmp):
    return [CINE_4D, CINE_4D], {}, CINE_4D, "a 4D image among 2 inputs"


def unknown_extension(tmp):
    p = tmp / "cine.mp4"
    p.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return [p], {}, p, "unknown extension '.mp4'"


def dicom_empty_folder(tmp):
    d = tmp / "dicom"
    d.mkdir()
    (d / "README.txt").write_text("exported images")
    return [d], {}, d, "no DICOM cine in folder"


def dicom_without_trigger_times(tmp):
    d = tmp / "dicom"
    d.mkdir()
    for n in (101, 102, 121):
        img = sitk.ReadImage(str(SB_DICOMS / f"{n}.dcm"))
        img.EraseMetaData("0018|1060")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(d / f"{n}.dcm"))
        writer.Execute(img)
    return [d], {}, d, "not a cine: no trigger times"


def dicom_missing_phase(tmp):
    d = tmp / "dicom"
    d.mkdir()
    for n in range(101, 141):
        if n != 130:
            shutil.copy(SB_DICOMS / f"{n}.dcm", d)
    return [d], {}, d, "has 19 phases, others have 20"


def frame_numbers_without_n_frames(tmp):
    return [ED, ES], {"frame_numbers": [4, 11]}, "frame_numbers", "needs n_frames"


def frame_times_out_of_range(tmp):
    return [ED, ES], {"frame_times": [0.0, 1.2]}, "frame_times", "cycle fractions in [0, 1)"


CASES: list[Case] = [
    missing_file, garbage_nifti, truncated_gzip, not_gzip_magic, nrrd_wrong_magic,
    nrrd_truncated, directory_among_files, image_2d, single_frame, single_time_point_4d,
    different_shapes, different_geometry, nan_values, inf_values_nrrd, constant_frame,
    zero_size_dimension, absurd_spacing, several_4d, unknown_extension, dicom_empty_folder,
    dicom_without_trigger_times, dicom_missing_phase, frame_numbers_without_n_frames,
    frame_times_out_of_range,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_named_and_explained(tmp_path, case):
    inputs, kwargs, named, problem = case(tmp_path)
    with pytest.raises(NimosefInputError) as err:
        load_cine(inputs, **kwargs)
    message = str(err.value)
    assert err.value.path == str(named), message
    assert message.startswith(f"{named}: "), message
    assert problem in err.value.problem, message


def test_folder_of_nifti_frames_hints_at_giving_the_files(tmp_path):
    shutil.copy(ED, tmp_path)
    shutil.copy(ES, tmp_path)
    with pytest.raises(NimosefInputError, match="no DICOM cine in folder") as err:
        load_cine([tmp_path])
    assert err.value.path == str(tmp_path)
    assert "give image files such as patient090_frame04.nii.gz as inputs" in str(err.value)


def test_dicom_series_argument_needs_a_dicom_folder():
    with pytest.raises(NimosefInputError, match="series: applies only to a DICOM folder"):
        load_cine([CINE_4D], series=0)
