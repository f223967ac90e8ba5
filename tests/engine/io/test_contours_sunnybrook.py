"""Sunnybrook manual contours: parsing, pixel convention, and agreement with the real images."""

from __future__ import annotations

import numpy as np
import pytest
from io_testdata import SB_CONTOURS, SB_DICOMS

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.io.cine import load_cine
from nimosef_engine.io.contours import (
    contour_mask,
    dicom_file_to_slice_phase,
    load_sunnybrook_contours,
)
from nimosef_engine.io.dicom import scan_dicom_cine


@pytest.fixture(scope="module")
def endo():
    return load_sunnybrook_contours(SB_CONTOURS / "i-contours")


@pytest.fixture(scope="module")
def epi():
    return load_sunnybrook_contours(SB_CONTOURS / "o-contours")


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_file_number_to_slice_phase():
    assert dicom_file_to_slice_phase(1) == (0, 0)
    assert dicom_file_to_slice_phase(108) == (5, 7)
    assert dicom_file_to_slice_phase(119) == (5, 18)
    assert dicom_file_to_slice_phase(240) == (11, 19)
    assert dicom_file_to_slice_phase(25, phases=12) == (2, 0)
    with pytest.raises(ValueError):
        dicom_file_to_slice_phase(0)


def test_load_contours(endo, epi):
    assert sorted(endo) == [108, 119, 128, 139, 148, 159]
    assert sorted(epi) == [119, 139, 159]
    first = (SB_CONTOURS / "i-contours" / "IM-0001-0108-icontour-manual.txt").read_text().split()
    np.testing.assert_allclose(endo[108][0], [float(first[0]), float(first[1])])
    for pts in (*endo.values(), *epi.values()):
        assert pts.ndim == 2 and pts.shape[1] == 2 and len(pts) > 20
        assert pts.min() > 0 and pts.max() < 256


def test_mask_pixel_centre_convention():
    # x = columns 0.5..2.5 -> cols 1, 2; y = rows 0.5..3.5 -> rows 1, 2, 3
    square = np.array([[0.5, 0.5], [2.5, 0.5], [2.5, 3.5], [0.5, 3.5]])
    expected = np.zeros((5, 6), dtype=bool)
    expected[1:4, 1:3] = True
    np.testing.assert_array_equal(contour_mask(square, (5, 6)), expected)
    # a contour partly outside the image is clipped, not wrapped
    np.testing.assert_array_equal(contour_mask(square - 2.0, (5, 6))[:2, :1], [[True], [True]])


def test_masks_match_contour_area(endo, epi):
    for n, pts in endo.items():
        mask = contour_mask(pts, (256, 256))
        assert mask.sum() == pytest.approx(polygon_area(pts), rel=0.05), n
    for n in epi:
        inner, outer = contour_mask(endo[n], (256, 256)), contour_mask(epi[n], (256, 256))
        assert np.all(outer[inner]), "endocardium lies inside the epicardium"
        assert outer.sum() > 1.3 * inner.sum()


def test_contours_on_the_cine_frames(endo, epi):
    """Blood (bright in SSFP) inside the endocardium, darker myocardium in the ring."""
    cine = load_cine([SB_DICOMS])
    layout = scan_dicom_cine(SB_DICOMS)
    pixel_area = float(np.prod(cine.spacing_mm[:2]))
    for n in epi:
        k, t = layout.index_of(SB_DICOMS / f"{n}.dcm")
        image = cine.frames[t, :, :, k].T  # (rows, cols)
        blood = contour_mask(endo[n], image.shape)
        ring = contour_mask(epi[n], image.shape) & ~blood
        assert image[blood].mean() > 2.0 * image[ring].mean(), n
        assert 300 < blood.sum() * pixel_area < 5000, n  # LV cavity (dilated HF heart), mm^2
    # the contour drawn on the transposed image (x/y swapped) no longer encloses the blood
    n = 119
    k, t = layout.index_of(SB_DICOMS / f"{n}.dcm")
    image = cine.frames[t, :, :, k].T
    swapped = contour_mask(endo[n][:, ::-1], image.shape)
    assert image[swapped].mean() < image[contour_mask(endo[n], image.shape)].mean()


def test_bad_contour_files(tmp_path):
    bad = tmp_path / "IM-0001-0042-icontour-manual.txt"
    bad.write_text("120.5 137.5\n121.0 oops\n")
    with pytest.raises(NimosefInputError, match="line 2: expected 'x y'") as err:
        load_sunnybrook_contours(tmp_path)
    assert err.value.path == str(bad)
    bad.write_text("120.5 137.5\n121.0 136.5\n")
    with pytest.raises(NimosefInputError, match="needs >= 3 points"):
        load_sunnybrook_contours(tmp_path)
    bad.unlink()
    with pytest.raises(NimosefInputError, match="no '\\*contour-manual.txt' files"):
        load_sunnybrook_contours(tmp_path)
