"""Label maps refined by the image (nimosef_engine.refinement.refine), on a real ACDC frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.data.roi import intensity_percentiles, normalise_intensity
from nimosef_engine.evaluation.metrics import dice
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.refinement.refine import (
    MIN_SLICE_WEIGHT,
    fill_lv_cavity,
    image_on_grid,
    quantise_image,
    refine_probs,
    refine_with_evidence,
    slice_gaussian,
    slice_shifts,
)

P090 = Path(__file__).resolve().parents[2] / "data" / "acdc" / "patient090"


@pytest.fixture(scope="module")
def frame():
    """patient090's ED frame, normalised as segment-track does, and its manual labels,
    cropped around the heart."""
    img, _ = load_nifti(P090 / "patient090_frame04.nii.gz", ndim=3)
    gt, _ = load_nifti(P090 / "patient090_frame04_gt.nii.gz", ndim=3, dtype=np.uint8)
    gt = remap_acdc_labels(gt)
    box = tuple(slice(max(a.min() - 15, 0), a.max() + 15) for a in np.nonzero(gt)[:2])
    img01 = normalise_intensity(img, intensity_percentiles(img, "patient090"))
    return quantise_image(img01[box]), gt[box]


SPACING_090 = (1.78571, 1.78571)  # patient090's in-plane voxel size (mm)


def soft(labels: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Class probabilities from a label map: one-hot, blurred in-plane."""
    onehot = np.stack([(labels == c).astype(np.float32) for c in range(4)])
    blurred = np.stack([ndimage.gaussian_filter(p, (sigma, sigma, 0)) for p in onehot])
    return blurred / blurred.sum(0, keepdims=True)


def test_a_blood_pool_drawn_too_big_shrinks_back_to_the_bright_blood(frame):
    img_u8, gt = frame
    # the prior's mistake: the LV blood pool grown 2 voxels into the myocardium
    wrong = gt.copy()
    grown = ndimage.binary_dilation(gt == 1, np.ones((3, 3, 1), bool), iterations=2)
    wrong[grown & (gt == 2)] = 1
    before = {c: dice(wrong, gt, c) for c in (1, 2)}
    post = refine_probs(image_on_grid(img_u8, 1), soft(wrong))
    after = post.argmax(0)
    assert post.shape == (4, *gt.shape) and post.dtype == np.float32
    np.testing.assert_allclose(post.sum(0), 1.0, atol=1e-5)
    assert dice(after, gt, 1) > before[1] + 0.05, (before, dice(after, gt, 1))
    assert dice(after, gt, 2) > before[2] + 0.1, (before, dice(after, gt, 2))


def test_a_right_segmentation_moves_little(frame):
    # manual contours are not intensity edges everywhere (partial volume at the myocardium's
    # borders): the refinement trades a few of those voxels, no more
    img_u8, gt = frame
    after = refine_probs(image_on_grid(img_u8, 1), soft(gt, 0.5)).argmax(0)
    for c, least in ((1, 0.9), (2, 0.85), (3, 0.95)):
        assert dice(after, gt, c) > least, c


def test_with_no_prior_preference_the_intensity_decides():
    img = np.full((20, 20, 2), 0.1, np.float32)  # dark myocardium ...
    img[5:15, 5:15] = 0.8  # ... around a bright blood pool
    probs = np.zeros((4, 20, 20, 2), np.float32)
    probs[1], probs[2] = 0.5, 0.5
    probs[:, 8:12, 8:12] = 0.25  # a patch where the network has no opinion at all
    probs[1, 3, 3], probs[2, 3, 3] = 0.6, 0.4  # ... and a dark voxel it calls blood
    post = refine_probs(img, probs)
    assert np.isin(post[:, 8:12, 8:12].argmax(0), (1, 3)).all()  # a blood pool
    assert post[:, 3, 3].argmax() == 2


def test_slices_with_too_little_of_a_class_take_the_frame_wide_model():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (30, 30, 3)).astype(np.float32)
    w = np.zeros_like(img)
    w[:, :, 0] = 1.0  # 900 voxels
    w[:2, :2, 1] = 1.0  # 4 voxels: too few for a model of its own
    assert 4 < MIN_SLICE_WEIGHT < 900
    mean, sd = slice_gaussian(img, w)
    assert mean[0] == pytest.approx(img[:, :, 0].mean(), abs=1e-6)
    assert sd[0] == pytest.approx(img[:, :, 0].std(), abs=1e-5)
    everything = np.concatenate([img[:, :, 0].ravel(), img[:2, :2, 1].ravel()])
    assert mean[1] == pytest.approx(everything.mean(), abs=1e-6)
    assert mean[2] == mean[1]  # an empty slice too
    assert slice_gaussian(img, np.zeros_like(img))[0].tolist() == [0.5] * 3


def test_the_image_follows_the_super_resolved_grid():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 1] = 255
    assert image_on_grid(img, 1)[0, 0].tolist() == [0.0, 1.0, 0.0]
    # sub-slice centres of z factor 2 lie at old k = -0.25, 0.25, 0.75, 1.25, 1.75, 2.25
    np.testing.assert_allclose(image_on_grid(img, 2)[0, 0], [0, 0.25, 0.75, 0.75, 0.25, 0])
    assert quantise_image(np.array([-0.5, 0.5, 2.0])).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="differ"):
        refine_probs(np.zeros((2, 2, 3), np.float32), np.zeros((4, 2, 2, 2), np.float32))


def test_the_image_is_better_explained_by_the_right_layout(frame):
    img_u8, gt = frame
    image = image_on_grid(img_u8, 1)
    right = refine_with_evidence(image, soft(gt))[1]
    shifted = refine_with_evidence(image, soft(np.roll(gt, 6, axis=0)))[1]
    assert np.isfinite(right) and right > shifted + 0.05, (right, shifted)


def test_papillary_muscles_go_back_to_the_cavity_and_the_wall_stays(frame):
    _, gt = frame
    k = int(np.argmax((gt == 1).sum((0, 1))))  # the slice with the most LV
    drawn = gt.copy()
    cavity = np.argwhere(gt[:, :, k] == 1)
    cx, cy = cavity.mean(0).astype(int)
    drawn[cx - 2:cx + 2, cy - 2:cy + 2, k] = 2  # a dark papillary muscle called myocardium
    assert (drawn == 2).sum() > (gt == 2).sum()
    # the manual cavity is convex in-plane but for a few voxels ...
    hull_of_gt = fill_lv_cavity(gt)
    assert 0 < (hull_of_gt != gt).sum() < 20
    # ... and the muscle is cavity again, the wall untouched
    assert np.array_equal(fill_lv_cavity(drawn), hull_of_gt)
    # a stray LV voxel far outside the heart does not stretch the cavity over the wall
    stray = gt.copy()
    stray[0, 0, k] = 1
    assert np.array_equal(fill_lv_cavity(stray), np.where(stray == 2, hull_of_gt, stray))
    # a slice with an LV on a line has no area to fill
    line = np.zeros((5, 5, 1), np.uint8)
    line[1:4, 2, 0] = 1
    assert np.array_equal(fill_lv_cavity(line), line)


def test_slices_drawn_off_the_image_are_shifted_back(frame):
    """A slice whose labels sit a few voxels off its image (a breath-hold offset) is found,
    and the shift that puts it back is returned; aligned slices stay put."""
    img_u8, gt = frame
    probs = soft(gt)
    moved = {2: (3, -2), 5: (-2, 1)}  # slice: (dx, dy) the labels were moved by
    for k, d in moved.items():
        probs[:, :, :, k] = np.roll(probs[:, :, :, k], d, axis=(1, 2))
    image = image_on_grid(img_u8, 1)
    shifts = slice_shifts([image], [probs], SPACING_090)
    assert shifts.shape == (gt.shape[2], 2) and shifts.dtype == np.int64
    reach = round(5.0 / SPACING_090[0])
    assert np.abs(shifts).max() <= reach
    for k, d in moved.items():
        assert tuple(shifts[k]) == (-d[0], -d[1]), (k, shifts[k])
    # manual contours are not intensity edges to the voxel: the others within one voxel
    assert np.abs(np.delete(shifts, list(moved), axis=0)).max() <= 1, shifts
    # the probabilities shifted back match the labels again
    fixed = np.stack([np.roll(probs[:, :, :, k], tuple(shifts[k]), axis=(1, 2))
                      for k in range(gt.shape[2])], -1)
    for c in (1, 2, 3):
        assert dice(fixed.argmax(0), gt, c) > dice(probs.argmax(0), gt, c)
    # evidence from two frames adds up: the same frame twice gives the same shifts
    np.testing.assert_array_equal(slice_shifts([image, image], [probs, probs], SPACING_090),
                                  shifts)


def test_the_slice_network_s_reading_pulls_the_labels_to_it(frame):
    """Where the fitted model is wrong and the slice network right, the refinement with both
    ends nearer the labels than with the model and the intensities alone; the stronger the
    slice network's weight, the nearer."""
    img_u8, gt = frame
    wrong = np.roll(gt, 2, axis=0)  # the model's boundaries two voxels off
    image = image_on_grid(img_u8, 1)
    reading = soft(gt, 0.7)
    scores = []
    for gamma in (None, 0.5, 2.0):
        post = refine_probs(image, soft(wrong)) if gamma is None else refine_probs(
            image, soft(wrong), slice_probs=reading, gamma=gamma)
        np.testing.assert_allclose(post.sum(0), 1.0, atol=1e-5)
        scores.append(np.mean([dice(post.argmax(0), gt, c) for c in (1, 2, 3)]))
    assert scores[0] < scores[1] < scores[2], scores
    with pytest.raises(ValueError, match="slice probabilities"):
        refine_probs(image, soft(gt), slice_probs=reading[:, :-1])
