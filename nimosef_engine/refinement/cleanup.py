"""Label-map clean-up (per frame): largest connected component per label, holes filled, and
the ventricle ended where the expert convention ends it (:func:`trim_lv_ends`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean ``(X, Y, Z)`` mask."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def clean_labels(labels: np.ndarray, classes=(1, 2, 3)) -> np.ndarray:
    """Clean a ``(X, Y, Z)`` label map: for each class keep its largest component, then fill
    in-plane holes of each class that are background. Removed voxels become background."""
    out = np.zeros_like(labels)
    for c in classes:
        out[largest_component(labels == c)] = c
    for c in classes:
        mask = out == c
        for k in range(out.shape[2]):
            filled = ndimage.binary_fill_holes(mask[:, :, k])
            holes = filled & ~mask[:, :, k] & (out[:, :, k] == 0)
            out[:, :, k][holes] = c
    return out


def clean_labels_4d(labels: np.ndarray) -> np.ndarray:
    """:func:`clean_labels` on each frame of ``(T, X, Y, Z)``."""
    return np.stack([clean_labels(f) for f in labels])


LV, MYO = 1, 2
MIN_MYO_COVER = 0.35  # below it, no LV slice of ours (>= 0.49); the atria of another centre <= 0.27


def myocardial_cover(labels: np.ndarray) -> np.ndarray:
    """Per slice of ``labels (X, Y, Z)``, the share of the LV blood pool's in-plane border
    that is myocardium, ``(Z,)`` float (NaN on slices without LV). About 1 on every slice of
    the ventricle; low above the valve plane, where an atrium or the outflow tract is a blood
    pool that no myocardial ring closes."""
    cover = np.full(labels.shape[2], np.nan)
    for k in range(labels.shape[2]):
        lv = labels[:, :, k] == LV
        if lv.any():
            ring = ndimage.binary_dilation(lv) & ~lv
            cover[k] = float((labels[:, :, k][ring] == MYO).mean()) if ring.any() else 0.0
    return cover


def trim_lv_base(labels: np.ndarray, min_cover: float = MIN_MYO_COVER) -> np.ndarray:
    """The heart ended at the LV's base as experts end it (ACDC, M&Ms). From the basal end of
    the LV's run of slices (the end where its blood pool is larger), slices whose pool is less
    than ``min_cover`` walled by myocardium (:func:`myocardial_cover`) are above the base: the
    atrium or the outflow tract, a round bright pool that no myocardial ring closes, which a
    stack covering the atria shows and the labels leave out (at end-systole more so, as the
    valve plane descends). They, and any slice further out, lose every label: in the experts'
    labels no structure reaches past the LV's base (none of ACDC's 200 labelled frames). A
    copy of ``labels (X, Y, Z)``."""
    cover = myocardial_cover(labels)
    ks = np.flatnonzero(np.isfinite(cover))
    out = labels.copy()
    if len(ks) < 3:
        return out
    area = (labels == LV).sum((0, 1))[ks]
    third = max(1, len(ks) // 3)
    base_low = area[:third].mean() >= area[-third:].mean()
    walled = [k for k in (ks if base_low else ks[::-1]) if cover[k] >= min_cover]
    if not walled:
        return out
    if base_low:
        out[:, :, :walled[0]] = 0
    else:
        out[:, :, walled[0] + 1:] = 0
    return out
