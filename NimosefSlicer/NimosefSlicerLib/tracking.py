"""*Track points*: markups placed on the end-diastolic (ED) frame follow the wall through the
cycle.

Each control point ``p`` (world RAS mm, taken as an ED position) goes to ``p + u_t(p)`` in
frame ``t``, ``u_t`` the engine's ``from_ed`` field of that frame, read from the motion
sequence in the scene (:mod:`.motion`; no file is needed, so this works after the run's work
folder is gone). The positions go into a markups sequence in the cine's browser (one locked
point list per frame, the placed points' labels kept) and a trajectory table (one row per
frame and point). The placed point list itself is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import curves, motion
from .cine import ROLE
from .results import (
    INPUT,
    NimosefResults,
    _attach,
    _detached_output_sequence,
    _remove_with_dependents,
    _tag,
)

TRACK_SOURCE = "NIMOSEF.trackSource"
"""Attribute of a tracked-points sequence and table: the ID of the placed point list."""
TRACKED_COLOR = (1.0, 0.85, 0.0)


@dataclass
class TrackedPoints:
    """A *Track points* result: the markups sequence, the point list the browser shows, the
    trajectory table, the labels and ``positions (T, N, 3)`` RAS mm."""

    sequence: Any
    proxy: Any
    table: Any
    labels: list[str]
    positions: np.ndarray


def placed_points(markups) -> tuple[list[str], np.ndarray]:
    """Labels and world positions ``(N, 3)`` RAS mm of a point list's control points."""
    labels, points = [], []
    for i in range(markups.GetNumberOfControlPoints()):
        p = [0.0, 0.0, 0.0]
        markups.GetNthControlPointPositionWorld(i, p)
        labels.append(markups.GetNthControlPointLabel(i) or f"P{i + 1}")
        points.append(p)
    return labels, np.asarray(points, dtype=np.float64).reshape(-1, 3)


def tracking_problem(results: NimosefResults | None, markups) -> str | None:
    """Why ``markups`` cannot be tracked with ``results`` (None when it can)."""
    if results is None or "motion" not in results.sequences:
        return "run Segment & Track first: there is no motion to track with"
    if markups is None or not markups.IsA("vtkMRMLMarkupsFiducialNode"):
        return "choose a point list (place points on the end-diastolic frame)"
    if markups.GetAttribute(ROLE):
        return (f"'{markups.GetName()}' are NIMOSEF's tracked points: choose the points you "
                "placed on the end-diastolic frame")
    if markups.GetNumberOfControlPoints() == 0:
        return f"'{markups.GetName()}' has no points: place some on the end-diastolic frame"
    return None


def remove_tracked(ctx, results: NimosefResults, markups) -> int:
    """Remove the tracked sequence, its proxy and table made earlier from ``markups`` for
    this cine; returns how many nodes went."""
    scene, cine = ctx.scene, results.cine
    doomed = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if node.GetAttribute(TRACK_SOURCE) == markups.GetID() and \
                node.GetAttribute(INPUT) == cine.sequence.GetID():
            doomed.append(node)
    for node in list(doomed):
        if node.IsA("vtkMRMLSequenceNode"):
            proxy = cine.browser.GetProxyNode(node)
            cine.browser.RemoveSynchronizedSequenceNode(node.GetID())
            if proxy is not None and proxy not in doomed:
                doomed.append(proxy)
    for node in doomed:
        _remove_with_dependents(scene, node)
    return len(doomed)


def track_points(ctx, results: NimosefResults, markups, name: str | None = None
                 ) -> TrackedPoints:
    """Track the points of ``markups`` (placed on the ED frame) through the cycle: a markups
    sequence synchronised to the cine and a trajectory table (``frame, point, R, A, S,
    displacement_mm``). Tracking the same point list again replaces the earlier result.
    Raises ValueError (:func:`tracking_problem`'s message) when it cannot track."""
    import slicer

    problem = tracking_problem(results, markups)
    if problem:
        raise ValueError(problem)
    cine = results.cine
    name = name or f"{markups.GetName()} tracked"
    labels, points = placed_points(markups)
    positions = motion.tracked_positions(results.sequences["motion"], points)
    remove_tracked(ctx, results, markups)

    sequence = _detached_output_sequence(cine, name, "tracked")
    sequence.SetAttribute(TRACK_SOURCE, markups.GetID())
    for t in range(cine.n_frames):
        frame = slicer.vtkMRMLMarkupsFiducialNode()
        frame.SetName(f"{name}_{t:02d}")
        for label, p in zip(labels, positions[t], strict=True):
            frame.AddControlPointWorld(p.tolist(), label)
        frame.SetLocked(True)
        sequence.SetDataNodeAtValue(frame, cine.sequence.GetNthIndexValue(t))
    proxy = _attach(ctx, cine, sequence)
    proxy.SetAttribute(TRACK_SOURCE, markups.GetID())
    proxy.SetLocked(True)
    proxy.CreateDefaultDisplayNodes()
    display = proxy.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*TRACKED_COLOR)
        display.SetColor(*TRACKED_COLOR)

    n = len(labels)
    disp = np.linalg.norm(positions - points, axis=-1)  # (T, N) mm from the placed point
    columns = {"frame": np.repeat(np.arange(cine.n_frames), n).astype(np.int64),
               "point": labels * cine.n_frames,
               "R": positions[..., 0].ravel(), "A": positions[..., 1].ravel(),
               "S": positions[..., 2].ravel(), "displacement_mm": disp.ravel()}
    table = ctx.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} trajectories")
    curves.fill_table(table, columns, {"R": 3, "A": 3, "S": 3, "displacement_mm": 3},
                      {"R": "mm", "A": "mm", "S": "mm", "displacement_mm": "mm"})
    _tag(table, "trajectories", cine)
    table.SetAttribute(TRACK_SOURCE, markups.GetID())
    return TrackedPoints(sequence, proxy, table, labels, positions)
