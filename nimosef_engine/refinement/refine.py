"""Label maps refined by the image: the prior's class probabilities as a spatial prior, the
subject's own intensities as the likelihood.

The fitted implicit function places the heart's structures; its boundaries are as sharp as
the population allows. In a cine the blood pools are bright and the myocardium dark, so each
frame is re-labelled by Bayes' rule, ``p(c | x, I) ∝ p_net(c | x)^β · p(I(x) | c)``, with a
Gaussian intensity model per heart class and per slice (slices of a cine differ in coil
sensitivity) estimated from the image by a few EM iterations started from the network's
probabilities, and a flat likelihood for the background (lung, fat, liver: no single
intensity). ``β < 1`` loosens the prior so that a boundary can move to the image's edge.
Papillary muscles and trabeculations are as dark as the myocardium but belong to the LV
cavity in the labels the prior was trained on (ACDC): :func:`fill_lv_cavity` gives them back.
The ablation is in ``benchmarks/intensity_refinement.py`` and the model card.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from nimosef_engine.core.geometry import interpolate_slices
from nimosef_engine.core.progress import check_cancelled

REFINE_BETA = 0.5  # weight of the network's log-probabilities
SLICE_GAMMA = 1.0  # weight of the slice network's log-probabilities (:mod:`slice_evidence`)
REFINE_ITERATIONS = 5  # EM iterations
LV, MYO = 1, 2
MIN_SLICE_WEIGHT = 30.0  # voxels of a class in a slice below which its frame-wide model is used
SD_FLOOR = 0.02  # smallest intensity standard deviation (normalised units)
IMAGE_LEVELS = 255  # the normalised image is kept as uint8 in subject.nimosef
MAX_SLICE_SHIFT_MM = 5.0  # largest in-plane shift of a slice (:func:`slice_shifts`)
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def quantise_image(intensity01: np.ndarray) -> np.ndarray:
    """Normalised intensities in [0, 1] -> uint8 (what ``subject.nimosef`` keeps)."""
    return np.round(np.clip(intensity01, 0.0, 1.0) * IMAGE_LEVELS).astype(np.uint8)


def image_on_grid(image_u8: np.ndarray, factor: int) -> np.ndarray:
    """One frame ``(X, Y, Z)`` uint8 -> ``(X, Y, Z*factor)`` float32 in [0, 1], linear along z
    onto the sub-slice centres of :func:`geometry.resample_grid_z` (edge slices held)."""
    return interpolate_slices(image_u8.astype(np.float32) / IMAGE_LEVELS, factor)


def slice_gaussian(image: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and standard deviation of ``image`` per slice (last axis), ``(Z,)`` each;
    slices where the class weighs less than :data:`MIN_SLICE_WEIGHT` take the frame-wide
    values (and an absent class gets mean 0.5, sd 0.5: a nearly flat likelihood)."""
    w_z = weight.sum((0, 1), dtype=np.float64)
    m_z = (weight * image).sum((0, 1), dtype=np.float64)
    q_z = (weight * image * image).sum((0, 1), dtype=np.float64)
    total = w_z.sum()
    if total < 1e-6:
        return np.full_like(w_z, 0.5), np.full_like(w_z, 0.5)
    mean_all = m_z.sum() / total
    var_all = q_z.sum() / total - mean_all ** 2
    few = w_z < MIN_SLICE_WEIGHT
    safe = np.where(few, 1.0, w_z)
    mean = np.where(few, mean_all, m_z / safe)
    var = np.where(few, var_all, q_z / safe - mean ** 2)
    return mean, np.sqrt(np.maximum(var, SD_FLOOR ** 2))


def refine_probs(image: np.ndarray, probs: np.ndarray, beta: float = REFINE_BETA,
                 iterations: int = REFINE_ITERATIONS, slice_probs: np.ndarray | None = None,
                 gamma: float = SLICE_GAMMA) -> np.ndarray:
    """Posterior class probabilities ``(C, X, Y, Z)`` float32 of one frame.

    ``image (X, Y, Z)``: the frame's intensities normalised to [0, 1] on the same grid as
    ``probs (C, X, Y, Z)``, the network's class probabilities (class 0 the background);
    ``slice_probs (C, X, Y, Z)``: the slice network's, on the same grid, or None, weighted by
    ``gamma``.
    """
    return refine_with_evidence(image, probs, beta, iterations, slice_probs, gamma)[0]


def class_log_likelihood(image: np.ndarray, post: np.ndarray,
                         out: np.ndarray | None = None) -> np.ndarray:
    """``log p(I(x) | c)`` ``(C, X, Y, Z)`` float32: for each heart class the per-slice Gaussian
    of the intensities weighted by ``post[c]`` (:func:`slice_gaussian`), 0 for the
    background (a flat likelihood on [0, 1]). Written into ``out`` when given."""
    ll = np.zeros(post.shape, np.float32) if out is None else out
    ll[0] = 0.0
    for c in range(1, post.shape[0]):
        mean, sd = slice_gaussian(image, post[c])
        z = (image - mean.astype(np.float32)) / sd.astype(np.float32)
        ll[c] = -(0.5 * z * z + np.log(sd).astype(np.float32) + _LOG_SQRT_2PI)
    return ll


def refine_with_evidence(image: np.ndarray, probs: np.ndarray, beta: float = REFINE_BETA,
                         iterations: int = REFINE_ITERATIONS,
                         slice_probs: np.ndarray | None = None,
                         gamma: float = SLICE_GAMMA) -> tuple[np.ndarray, float]:
    """:func:`refine_probs` and the mean log evidence of the image under the last iteration's
    model, ``mean_x log sum_c p_net(c|x)^beta p_slice(c|x)^gamma p(I(x)|c)``: how well the
    network's layout of the classes explains the image."""
    if image.shape != probs.shape[1:]:
        raise ValueError(f"image {image.shape} and probabilities {probs.shape} differ")
    if slice_probs is not None and slice_probs.shape != probs.shape:
        raise ValueError(f"slice probabilities {slice_probs.shape} and probabilities "
                         f"{probs.shape} differ")
    image = np.asarray(image, np.float32)
    log_prior = _log_prior(probs, beta, slice_probs, gamma)
    post = np.array(probs, np.float32) if slice_probs is None else _normalised(log_prior)
    score = np.empty_like(post)
    evidence = float("nan")
    for _ in range(int(iterations)):
        check_cancelled()
        class_log_likelihood(image, post, out=score)
        score += log_prior  # no array beyond the prior, scores and posterior
        top = score.max(0, keepdims=True)
        np.subtract(score, top, out=score)
        np.exp(score, out=post)
        total = post.sum(0, keepdims=True)
        evidence = float(np.mean(top + np.log(total), dtype=np.float64))
        post /= total
    return post, evidence


def _weighted_log(probs: np.ndarray, weight: float) -> np.ndarray:
    """``weight * log(probs)`` float32, probabilities floored at 1e-6."""
    out = np.log(np.maximum(probs, 1e-6, dtype=np.float32))
    out *= np.float32(weight)
    return out


def _log_prior(probs: np.ndarray, beta: float, slice_probs: np.ndarray | None = None,
               gamma: float = SLICE_GAMMA) -> np.ndarray:
    """``beta * log p_net (+ gamma * log p_slice)``, float32 ``(C, X, Y, Z)``."""
    log_prior = _weighted_log(probs, beta)
    if slice_probs is not None:
        log_prior += _weighted_log(slice_probs, gamma)
    return log_prior


def _normalised(log_p: np.ndarray) -> np.ndarray:
    """Softmax over the class axis of ``log_p (C, ...)`` (a new float32 array)."""
    p = np.exp(log_p - log_p.max(0, keepdims=True))
    p /= p.sum(0, keepdims=True)
    return p


def slice_shifts(images: list[np.ndarray], probs: list[np.ndarray], spacing_xy,
                 max_mm: float = MAX_SLICE_SHIFT_MM, beta: float = REFINE_BETA,
                 slice_probs: list[np.ndarray] | None = None,
                 gamma: float = SLICE_GAMMA) -> np.ndarray:
    """In-plane shift of each slice, ``(Z, 2)`` int (voxels along x and y), that best aligns
    the network's class probabilities with the image: the shift, at most ``max_mm`` each way,
    that maximises the slice's log evidence (as in :func:`refine_with_evidence`, under the
    intensity model refined from the unshifted probabilities) summed over the given frames.

    A short-axis cine is acquired slice by slice, each in its own breath-hold, so a slice can
    sit a few millimetres off its neighbours, in every frame alike; the implicit model is one
    smooth heart. ``images[i] (X, Y, Z)`` in [0, 1] and ``probs[i] (C, X, Y, Z)``: frames of
    one cine (ED and ES give the blood pools at both extremes). The network is then sampled at
    ``voxel - shift`` (:func:`sampling.fields.grid_coords_norm`). Ties go to the smallest shift.
    ``slice_probs[i]``: the slice network's probabilities of frame ``i`` (they stay where the
    image is; only the network's move; weighted by ``gamma``), or None.
    """
    reach = np.round(max_mm / np.asarray(spacing_xy, np.float64)[:2]).astype(int)
    shifts = sorted(((dx, dy) for dx in range(-reach[0], reach[0] + 1)
                     for dy in range(-reach[1], reach[1] + 1)),
                    key=lambda d: (d[0] ** 2 + d[1] ** 2, d))
    total = np.zeros((len(shifts), probs[0].shape[-1]))
    slice_probs = [None] * len(probs) if slice_probs is None else slice_probs
    for image, p, sp in zip(images, probs, slice_probs, strict=True):
        image = np.asarray(image, np.float32)
        ll = class_log_likelihood(image, refine_probs(image, p, beta, slice_probs=sp,
                                                      gamma=gamma))
        if sp is not None:
            ll += _weighted_log(sp, gamma)
        log_prior = _weighted_log(p, beta)
        for j, (dx, dy) in enumerate(shifts):
            check_cancelled()
            score = np.roll(log_prior, (dx, dy), axis=(1, 2))
            score += ll
            top = score.max(0)
            total[j] += np.mean(top + np.log(np.exp(score - top).sum(0)), axis=(0, 1))
    return np.array([shifts[j] for j in total.argmax(0)], np.int64).reshape(-1, 2)


def fill_lv_cavity(labels: np.ndarray) -> np.ndarray:
    """Myocardium voxels inside the in-plane convex hull of the LV blood pool (its largest
    component: a stray island would stretch the hull) become blood pool, slice by slice (a copy
    of ``labels (X, Y, Z)``): the cavity of the short-axis LV is convex, and dark papillary
    muscles and trabeculations inside it are cavity."""
    from nimosef_engine.refinement.cleanup import largest_component

    out = labels.copy()
    lv = largest_component(labels == LV)
    for k in range(labels.shape[2]):
        pts = np.argwhere(lv[:, :, k])
        if len(pts) < 3:
            continue
        try:
            facets = ConvexHull(pts).equations  # (n, 3): inside where a.x + b <= 0 for all
        except QhullError:  # all on a line: no area to fill
            continue
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0) + 1
        box = out[x0:x1, y0:y1, k]
        gx, gy = np.mgrid[x0:x1, y0:y1]
        inside = (gx[..., None] * facets[:, 0] + gy[..., None] * facets[:, 1]
                  + facets[:, 2] <= 1e-9).all(-1)
        box[inside & (box == MYO)] = LV
    return out


def refined_labels(image: np.ndarray, probs: np.ndarray, beta: float = REFINE_BETA,
                   iterations: int = REFINE_ITERATIONS, slice_probs: np.ndarray | None = None,
                   gamma: float = SLICE_GAMMA) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(X, Y, Z)`` uint8 of one frame refined by its image (:func:`refine_probs`,
    then :func:`fill_lv_cavity`), and the posterior probabilities."""
    post = refine_probs(image, probs, beta, iterations, slice_probs, gamma)
    return fill_lv_cavity(post.argmax(0).astype(np.uint8)), post


def final_labels(frame, image_u8: np.ndarray | None, factor: int, clean: bool,
                 slice_probs: np.ndarray | None = None, beta: float = REFINE_BETA,
                 gamma: float = SLICE_GAMMA,
                 iterations: int = REFINE_ITERATIONS) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels of a :class:`sampling.fields.SampledFrame` as written: refined by the frame's image
    ``image_u8 (X, Y, Z)`` on the native crop grid when given (the frame must carry its
    probabilities) and by the slice network's probabilities ``slice_probs (C, X, Y, Z)`` of
    that image when given (linear along z onto the sub-slices; the prior weighted by
    ``beta``, the slice network by ``gamma``, ``iterations`` of EM), then cleaned up if
    ``clean``:
    each class's largest component, holes filled, and the LV ended at its base as the experts
    end it (:func:`refinement.cleanup.trim_lv_base`). Returns the labels and the class probabilities
    they are the argmax of (refined or not; None if the frame has none)."""
    from nimosef_engine.refinement.cleanup import clean_labels, trim_lv_base

    probs, labels = frame.probs, frame.labels
    if image_u8 is not None:
        if probs is None:
            raise ValueError("refining a frame needs its class probabilities")
        sp = None if slice_probs is None else interpolate_slices(slice_probs, factor)
        labels, probs = refined_labels(image_on_grid(image_u8, factor), probs, beta,
                                       iterations, sp, gamma)
    if not clean:
        return labels, probs
    cleaned = clean_labels(labels)
    labels = trim_lv_base(cleaned)
    gone = labels != cleaned
    if probs is not None and gone.any():  # trimmed voxels are background in probs too
        probs = probs.copy()
        probs[0][gone] = 1.0
        probs[1:, gone] = 0.0
    return labels, probs
