"""A labelled cine on its scanner grid as a dataset layout reads it (:mod:`data.acdc`,
:mod:`data.bids`), before :mod:`data.preprocess` crops and normalises it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.geometry import HeartFrame

N_LABELS = 4


@dataclass
class RawSubject:
    """A labelled cine on its scanner grid, as read from a dataset layout.

    ``intensity`` (T, X, Y, Z) float32 in scanner units; ``labels`` (T, X, Y, Z) uint8 NIMOSEF
    labels or None; ``frame_indices`` (T,) 0-based cine frames; ``frame_times`` (T,) cycle
    time in [0, 1), ED = 0; ``intensity_range`` the 2nd/98th percentiles of the whole cine.
    ``heart`` / ``roi`` (offset, shape) come from the layout when it provides them (BIDS
    ``.tfm`` and ``sa_roi``), else they are derived from the labels.
    """

    subject_id: str
    intensity: np.ndarray
    affine_ras: np.ndarray
    frame_indices: np.ndarray
    frame_times: np.ndarray
    n_frames_cycle: int
    intensity_range: tuple[float, float]
    labels: np.ndarray | None = None
    label_path: Path | None = None
    heart: HeartFrame | None = None
    roi: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None
    group: str | None = None
    sources: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def check_labels(labels: np.ndarray, path: str | Path) -> np.ndarray:
    """Validate a label array (integers in 0..3) and return it as uint8."""
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)):
            raise NimosefInputError(path, "label map contains NaN or infinite values")
        if not np.all(labels == np.round(labels)):
            raise NimosefInputError(path, "label map has non-integer values")
    bad = (labels < 0) | (labels >= N_LABELS)
    if np.any(bad):
        values = sorted({int(v) for v in np.unique(labels[bad])[:5]})
        raise NimosefInputError(path, f"labels outside 0..{N_LABELS - 1}: {values}")
    return labels.astype(np.uint8)
