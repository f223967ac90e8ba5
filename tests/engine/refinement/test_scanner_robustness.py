"""What differs between scanners (scanner_augment) and how the bundled slice network holds
up under it, on a real cine from another centre (M&Ms-2) and an ACDC one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nimosef_engine.core.geometry import spacing_of
from nimosef_engine.data.roi import (
    crop_last3,
    intensity_percentiles,
    normalise_intensity,
    roi_box_at,
)
from nimosef_engine.evaluation.metrics import dice
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.model.bundled import load_slice_net
from nimosef_engine.refinement.cleanup import clean_labels
from nimosef_engine.refinement.slice_evidence import slice_probabilities
from nimosef_engine.training.scanner_augment import SHIFTS, as_numpy_frame, random_scanner

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def mnms2_ed():
    """The M&Ms-2 ED frame cropped (160 mm around the expert LV) and normalised as
    segment-track does, its labels, and its in-plane spacing (mm)."""
    img, aff = load_nifti(DATA / "mnms2" / "001_SA_ED.nii.gz", ndim=3)
    gt = load_nifti(DATA / "mnms2" / "001_SA_ED_gt.nii.gz", ndim=3, dtype=np.uint8)[0]
    off, shape = roi_box_at(np.argwhere(gt == 1).mean(0), img.shape, aff, 160.0)
    x = normalise_intensity(crop_last3(img, off, shape), intensity_percentiles(img, "ed"))
    return x, crop_last3(gt, off, shape), float(spacing_of(aff)[0])


def test_shifts_change_the_image_not_its_shape(mnms2_ed):
    x, _, _ = mnms2_ed
    for name, fn in SHIFTS.items():
        y = as_numpy_frame(fn, x)
        assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() <= y.max() <= 1
        if name != "none":
            assert np.abs(y - x).mean() > 0.005, name
    gen = torch.Generator().manual_seed(0)
    batch = torch.from_numpy(x.transpose(2, 0, 1)[:, None].copy())
    a = random_scanner(batch, gen)
    b = random_scanner(batch, torch.Generator().manual_seed(0))
    assert a.shape == batch.shape and torch.equal(a, b)  # seeded
    assert (a - batch).abs().mean() > 0.01


@pytest.mark.parametrize("shift", ["gamma_0.6", "gamma_1.8", "bias_0.4", "res_x2", "gibbs_0.6",
                                   "noise_0.06", "histogram_6"])
def test_slice_network_reads_the_same_heart_under_another_scanner(mnms2_ed, shift):
    """Another intensity response or contrast curve, a bias field, half the in-plane
    resolution, ringing or noise: the bundled slice network keeps its LV Dice against the
    experts and its LV volume within 6 %."""
    x, gt, sp = mnms2_ed
    net, _ = load_slice_net()

    def labels(image):
        return clean_labels(slice_probabilities(net, image, sp).argmax(0)
                            .astype(np.uint8))

    ref = labels(x)
    got = labels(as_numpy_frame(SHIFTS[shift], x))
    assert dice(ref, gt, 1) > 0.85
    assert dice(got, gt, 1) > dice(ref, gt, 1) - 0.03
    assert abs(int((got == 1).sum()) / int((ref == 1).sum()) - 1) < 0.06
