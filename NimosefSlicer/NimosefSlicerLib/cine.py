"""Cine MRI <-> Slicer volume sequence, with the voxel -> RAS geometry kept exactly.

Arrays here are NIfTI-ordered: a frame is ``(X, Y, Z)`` (voxel ``i, j, k``), a cine is
``(X, Y, Z, T)``; ``affine_ras`` (4, 4) maps ``(i, j, k, 1)`` to RAS mm, as Slicer's
IJKToRAS matrix does. Slicer arrays are ``(K, J, I)``: the transposes live here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import slicer
import slicer.util
import vtk

ROLE = "NIMOSEF.role"
"""Node attribute that marks the module's own result nodes (its value: the result's role)."""
TIME_INDEX_NAME = "time"
FRAME_INDEX_NAME = "frame"


@dataclass
class CineNodes:
    """A cine in the scene: the volume sequence, its browser and the proxy volume shown."""

    sequence: Any
    browser: Any
    proxy: Any

    @property
    def n_frames(self) -> int:
        return self.sequence.GetNumberOfDataNodes()


def matrix_from_array(affine: np.ndarray) -> vtk.vtkMatrix4x4:
    """4x4 numpy -> vtkMatrix4x4."""
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(affine[r, c]))
    return m


def array_from_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    """vtkMatrix4x4 -> (4, 4) float64."""
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(volume_node) -> np.ndarray:
    """The (4, 4) IJK -> RAS matrix of a volume node."""
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    return array_from_matrix(m)


def new_volume_node(array_xyz: np.ndarray, affine_ras: np.ndarray, name: str = "",
                    labelmap: bool = False):
    """A volume node (not in any scene) holding a ``(X, Y, Z)`` array with ``affine_ras``."""
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    set_volume_array(node, array_xyz, affine_ras)
    return node


def set_volume_array(node, array_xyz: np.ndarray, affine_ras: np.ndarray) -> None:
    """Give a volume node the voxels of a ``(X, Y, Z)`` array and the geometry ``affine_ras``."""
    node.SetIJKToRASMatrix(matrix_from_array(np.asarray(affine_ras, dtype=np.float64)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.asarray(array_xyz).T))


def volume_array_xyz(volume_node) -> np.ndarray:
    """A volume node's voxels as an ``(X, Y, Z)`` array (a copy)."""
    return np.array(slicer.util.arrayFromVolume(volume_node)).T.copy()


def index_values_for(n_frames: int, times_ms: np.ndarray | None = None
                     ) -> tuple[str, str, list[str]]:
    """(index name, unit, values) of a cine sequence: trigger times in ms when they are
    strictly increasing (what Slicer's DICOM import gives), else frame numbers 0..T-1."""
    if times_ms is not None and len(times_ms) == n_frames:
        values = [f"{round(float(t), 1):g}" for t in times_ms]
        if len(set(values)) == n_frames and np.all(np.diff(np.asarray(times_ms)) > 0):
            return TIME_INDEX_NAME, "ms", values
    return FRAME_INDEX_NAME, "", [str(t) for t in range(n_frames)]


def new_sequence(scene, name: str, n_frames: int, times_ms: np.ndarray | None = None):
    """An empty sequence node with a numeric time (ms) or frame index; returns (node, values)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    index_name, unit, values = index_values_for(n_frames, times_ms)
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(unit)
    sequence.SetIndexType(sequence.NumericIndex)
    return sequence, values


def volume_sequence_from_array(scene, frames_xyzt: np.ndarray, affine_ras: np.ndarray,
                               name: str, times_ms: np.ndarray | None = None):
    """A sequence of ``T`` volumes from an ``(X, Y, Z, T)`` array, all with ``affine_ras``."""
    frames_xyzt = np.asarray(frames_xyzt)
    if frames_xyzt.ndim != 4:
        raise ValueError(f"expected an (X, Y, Z, T) array, got shape {frames_xyzt.shape}")
    sequence, values = new_sequence(scene, name, frames_xyzt.shape[3], times_ms)
    set_sequence_frames(sequence, frames_xyzt, affine_ras, values)
    return sequence


def add_cine(ctx, frames_xyzt: np.ndarray, affine_ras: np.ndarray, name: str,
             times_ms: np.ndarray | None = None) -> CineNodes:
    """Put a cine in the scene as a volume sequence with its own browser and proxy volume.

    ``times_ms``: (T,) trigger times, the sequence index when given (else frame numbers).
    """
    sequence = volume_sequence_from_array(ctx.scene, frames_xyzt, affine_ras, name, times_ms)
    return browse_sequence(ctx, sequence, name)


def load_cine_file(ctx, path: str | Path) -> CineNodes:
    """Load a cine file or folder (4D NIfTI, DICOM series folder, NRRD sequence) with the
    engine's cine reader. Raises ``NimosefInputError`` naming the file when it is not one."""
    from nimosef_engine.io.cine import load_cine

    path = Path(path)
    cine = load_cine(path)
    name = path.name.split(".")[0] or "cine"
    frames_xyzt = np.moveaxis(cine.frames, 0, -1)
    return add_cine(ctx, frames_xyzt, cine.affine_ras, name, cine.trigger_times_ms)


def browse_sequence(ctx, sequence, name: str | None = None) -> CineNodes:
    """A browser and proxy volume for a volume sequence already in the scene."""
    name = name or sequence.GetName()
    browser = ctx.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.SetPlaybackRateFps(10.0)
    browser.SetPlaybackLooped(True)
    ctx.sequences_logic.UpdateProxyNodesFromSequences(browser)
    browser.SetSelectedItemNumber(0)
    proxy = browser.GetProxyNode(sequence)
    proxy.SetName(name)
    return CineNodes(sequence, browser, proxy)


def load_sequence_file(ctx, path: str | Path, name: str | None = None) -> CineNodes:
    """Load a volume sequence file (``.seq.nrrd``) with Slicer's own sequence reader, as
    *Add data* and the Sample Data module do (no nibabel, no engine). Raises
    ``ValueError`` naming the file when it cannot be read as a sequence of 2+ volumes."""
    path = Path(path)
    name = name or path.name.split(".")[0]
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    storage.SetScene(ctx.scene)  # not added: the sequence is not tied to this file
    storage.SetFileName(str(path))
    sequence = ctx.scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    ok = path.is_file() and storage.ReadData(sequence)
    if not ok or sequence.GetNumberOfDataNodes() < 2:
        ctx.scene.RemoveNode(sequence)
        raise ValueError(f"{path}: not a readable volume sequence of 2 or more frames")
    return browse_sequence(ctx, sequence, name)


def save_sequence_file(sequence, path: str | Path) -> Path:
    """Write a volume sequence with Slicer's sequence writer (``.seq.nrrd``, compressed)."""
    path = Path(path)
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    storage.SetScene(sequence.GetScene())
    storage.SetFileName(str(path))
    storage.SetUseCompression(True)
    if not storage.WriteData(sequence):
        raise OSError(f"{path}: cannot write the sequence")
    return path


def _sequence_and_browser(ctx, node):
    """(sequence, browser or None) behind a sequence, browser or proxy node; (None, None)."""
    logic = ctx.sequences_logic
    if node.IsA("vtkMRMLSequenceBrowserNode"):
        return node.GetMasterSequenceNode(), node
    if node.IsA("vtkMRMLSequenceNode"):
        return node, logic.GetFirstBrowserNodeForSequenceNode(node)
    browser = logic.GetFirstBrowserNodeForProxyNode(node)
    if browser is None:
        return None, None
    return browser.GetSequenceNode(node), browser


def input_problem(ctx, node) -> str | None:
    """Why ``node`` cannot be the input cine (None when it can): it must be a volume sequence
    of 2 or more scalar volumes (or its browser, or the volume a browser shows), and not one
    of this module's own outputs."""
    if node is None:
        return "select an input cine (a volume sequence or a volume of one)"
    if node.GetAttribute(ROLE):
        return (f"'{node.GetName()}' is a NIMOSEF result, not a cine: choose the cine it "
                "was computed from")
    sequence, browser = _sequence_and_browser(ctx, node)
    if sequence is None:
        return (f"'{node.GetName()}' is a single volume that no sequence browser plays: "
                "load the cine as a sequence (DICOM or 4D NIfTI)")
    if sequence.GetAttribute(ROLE):
        return (f"'{node.GetName()}' belongs to a NIMOSEF result, not a cine: choose the "
                "cine it was computed from")
    if sequence.GetNumberOfDataNodes() < 2:
        return f"'{node.GetName()}' is not a cine with 2 or more frames"
    first = sequence.GetNthDataNode(0)
    if first is None or not first.IsA("vtkMRMLScalarVolumeNode") or \
            first.IsA("vtkMRMLLabelMapVolumeNode"):
        return f"sequence '{sequence.GetName()}' does not hold image volumes"
    return None


def input_candidates(ctx) -> tuple[list[str], list[str]]:
    """(IDs of the sequence and scalar volume nodes that are valid input cines, IDs of those
    that are not): the input selector shows the first and hides the second."""
    good, bad = [], []
    for cls in ("vtkMRMLSequenceNode", "vtkMRMLScalarVolumeNode"):
        for i in range(ctx.scene.GetNumberOfNodesByClass(cls)):
            node = ctx.scene.GetNthNodeByClass(i, cls)
            (bad if input_problem(ctx, node) else good).append(node.GetID())
    return good, bad


def find_cine(ctx, node) -> CineNodes:
    """The cine behind ``node``: a volume sequence, a browser, or a volume shown by a browser.

    Raises ValueError (:func:`input_problem`'s message) when it is not a usable cine.
    """
    problem = input_problem(ctx, node)
    if problem:
        raise ValueError(problem)
    logic = ctx.sequences_logic
    sequence, browser = _sequence_and_browser(ctx, node)
    if browser is None:
        browser = ctx.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode",
                                              f"{sequence.GetName()} browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        logic.UpdateProxyNodesFromSequences(browser)
    return CineNodes(sequence, browser, browser.GetProxyNode(sequence))


def sequence_frame_time_ms(sequence) -> float | None:
    """Mean frame spacing in ms of a time-indexed sequence; None for a frame index."""
    unit = (sequence.GetIndexUnit() or "").lower()
    scale = {"ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0}.get(unit)
    if scale is None or sequence.GetNumberOfDataNodes() < 2:
        return None
    try:
        values = [float(sequence.GetNthIndexValue(i))
                  for i in range(sequence.GetNumberOfDataNodes())]
    except ValueError:
        return None
    step = float(np.mean(np.diff(values))) * scale
    return step if step > 0 else None


def sequence_to_array(sequence) -> tuple[np.ndarray, np.ndarray]:
    """All frames of a volume sequence as ``((X, Y, Z, T) array, affine_ras)``.

    Raises ValueError if the frames do not share one grid (shape and IJK -> RAS).
    """
    n_frames = sequence.GetNumberOfDataNodes()
    frames, affine = [], None
    for t in range(n_frames):
        node = sequence.GetNthDataNode(t)
        a = ijk_to_ras(node)
        if affine is None:
            affine = a
        elif not np.allclose(a, affine, atol=1e-4):
            raise ValueError(f"frame {t} of '{sequence.GetName()}' has a different geometry")
        frame = volume_array_xyz(node)
        if frames and frame.shape != frames[0].shape:
            raise ValueError(f"frame {t} of '{sequence.GetName()}' has shape {frame.shape}, "
                             f"frame 0 has {frames[0].shape}")
        frames.append(frame)
    return np.stack(frames, axis=-1), affine


def export_cine_to_nifti(sequence, path: str | Path) -> Path:
    """Write a volume sequence as the 4D NIfTI the engine reads (atomic), geometry kept."""
    from nimosef_engine.io.nifti import save_nifti

    frames, affine = sequence_to_array(sequence)
    return save_nifti(path, frames, affine, time_spacing=sequence_frame_time_ms(sequence))


def set_sequence_frames(sequence, frames_xyzt: np.ndarray, affine_ras: np.ndarray,
                        index_values: list[str] | None = None, labelmap: bool = False) -> None:
    """Set every frame of ``sequence`` from ``(X, Y, Z, T)`` volumes on ``affine_ras``.

    ``index_values``: one per frame for a new sequence; by default the sequence's own values
    (frames replaced in place, so browsers keep the sequence).
    """
    n_frames = frames_xyzt.shape[3]
    if index_values is None:
        if n_frames != sequence.GetNumberOfDataNodes():
            raise ValueError(f"{n_frames} frames for a sequence of "
                             f"{sequence.GetNumberOfDataNodes()}")
        index_values = [sequence.GetNthIndexValue(t) for t in range(n_frames)]
    name = sequence.GetName()
    for t, value in enumerate(index_values):
        frame = new_volume_node(frames_xyzt[..., t], affine_ras, f"{name}_{t:02d}", labelmap)
        sequence.SetDataNodeAtValue(frame, value)
