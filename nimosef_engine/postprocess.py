"""Label-map clean-up: largest connected component per label, holes filled (per frame)."""

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
