"""Sunnybrook manual contours: read the point files and fill them into pixel masks.

A contour file ``IM-0001-NNNN-icontour-manual.txt`` (or ``ocontour``) holds one ``x y`` point
per line in pixel units of DICOM file ``NNNN.dcm``: ``x`` is the column, ``y`` the row.
Pixel convention: pixel ``(row r, col c)`` has its centre at ``(x, y) = (c, r)`` and is inside
a contour when that centre is inside the polygon.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolygonPath

from nimosef_engine.core.errors import NimosefInputError

CONTOUR_NAME = re.compile(r"IM-\d+-(\d+)-([io])contour-manual\.txt$", re.IGNORECASE)


def dicom_file_to_slice_phase(n: int, phases: int = 20) -> tuple[int, int]:
    """0-based ``(slice, phase)`` of Sunnybrook DICOM file number ``n`` (1-based)."""
    if int(n) < 1 or int(phases) < 1:
        raise ValueError(f"file number {n} and phases {phases} must be >= 1")
    return (int(n) - 1) // int(phases), (int(n) - 1) % int(phases)


def _read_points(path: Path) -> np.ndarray:
    points = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            points.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise NimosefInputError(path, f"line {line_no}: expected 'x y', got "
                                          f"{line.strip()[:40]!r}") from None
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        raise NimosefInputError(path, f"a contour needs >= 3 points, got {len(pts)}")
    if not np.all(np.isfinite(pts)):
        raise NimosefInputError(path, "non-finite contour coordinates")
    return pts


def load_sunnybrook_contours(contour_dir: str | Path) -> dict[int, np.ndarray]:
    """DICOM file number -> ``(N, 2)`` float64 pixel points ``(x=col, y=row)``.

    ``contour_dir`` holds files of one kind (``i-contours`` or ``o-contours``).
    """
    contour_dir = Path(contour_dir)
    if not contour_dir.is_dir():
        raise NimosefInputError(contour_dir, "contour folder not found")
    out: dict[int, np.ndarray] = {}
    kinds = set()
    for path in sorted(contour_dir.iterdir()):
        match = CONTOUR_NAME.match(path.name)
        if match is None:
            continue
        kinds.add(match.group(2).lower())
        out[int(match.group(1))] = _read_points(path)
    if not out:
        raise NimosefInputError(contour_dir, "no '*contour-manual.txt' files in folder")
    if len(kinds) > 1:
        raise NimosefInputError(contour_dir, "mixes inner and outer contours; give one folder")
    return out


def contour_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fill a closed contour: ``(rows, cols)`` bool, True where the pixel centre is inside.

    ``points``: ``(N, 2)`` pixel ``(x=col, y=row)``. For a cine frame ``(X, Y, Z)`` of the
    same image, the mask of slice ``k`` is ``mask.T`` (X is the column index).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"points must be (N>=3, 2), got {pts.shape}")
    rows, cols = int(shape[0]), int(shape[1])
    mask = np.zeros((rows, cols), dtype=bool)
    c0, r0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
    c1, r1 = np.minimum(np.ceil(pts.max(0)).astype(int), [cols - 1, rows - 1])
    if c1 < c0 or r1 < r0:
        return mask
    rr, cc = np.mgrid[r0:r1 + 1, c0:c1 + 1]
    centres = np.stack([cc.ravel(), rr.ravel()], axis=1).astype(np.float64)
    inside = PolygonPath(pts, closed=False).contains_points(centres, radius=0.0)
    mask[r0:r1 + 1, c0:c1 + 1] = inside.reshape(rr.shape)
    return mask
