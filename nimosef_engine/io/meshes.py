"""Surface meshes of LV, MYO and RV from the continuous class probabilities (VTK)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vtk
from vtk.util import numpy_support

from nimosef_engine.core.atomic import atomic_path

CLASS_NAMES = {1: "LV", 2: "MYO", 3: "RV"}


def surface_from_field(field: np.ndarray, affine_ras: np.ndarray, level: float = 0.5,
                       smooth_iterations: int = 15) -> vtk.vtkPolyData:
    """Iso-surface of ``field (X, Y, Z)`` at ``level``, points in RAS mm via ``affine_ras``."""
    if not np.any(field >= level):
        return vtk.vtkPolyData()
    img = vtk.vtkImageData()
    img.SetDimensions(*field.shape)
    arr = numpy_support.numpy_to_vtk(
        np.ascontiguousarray(field.transpose(2, 1, 0)).ravel().astype(np.float32), deep=True)
    img.GetPointData().SetScalars(arr)
    fe = vtk.vtkFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, level)
    fe.ComputeNormalsOff()
    transform = vtk.vtkTransform()
    m = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            m.SetElement(i, j, float(affine_ras[i, j]))
    transform.SetMatrix(m)
    tf = vtk.vtkTransformPolyDataFilter()
    tf.SetInputConnection(fe.GetOutputPort())
    tf.SetTransform(transform)
    last = tf
    if smooth_iterations:
        sm = vtk.vtkWindowedSincPolyDataFilter()
        sm.SetInputConnection(tf.GetOutputPort())
        sm.SetNumberOfIterations(smooth_iterations)
        sm.SetPassBand(0.1)
        sm.NonManifoldSmoothingOn()
        sm.NormalizeCoordinatesOn()
        last = sm
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(last.GetOutputPort())
    normals.ConsistencyOn()
    normals.Update()
    out = vtk.vtkPolyData()
    out.DeepCopy(normals.GetOutput())
    return out


def write_vtp(poly: vtk.vtkPolyData, path: str | Path) -> Path:
    """Write ``poly`` as binary ``.vtp`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        w = vtk.vtkXMLPolyDataWriter()
        w.SetFileName(str(tmp))
        w.SetInputData(poly)
        w.SetDataModeToBinary()
        if not w.Write():
            raise OSError(f"could not write {path}")
    return path


def read_vtp(path: str | Path) -> vtk.vtkPolyData:
    r = vtk.vtkXMLPolyDataReader()
    r.SetFileName(str(path))
    r.Update()
    return r.GetOutput()


def polydata_points(poly: vtk.vtkPolyData) -> np.ndarray:
    """``(N, 3)`` point coordinates."""
    pts = poly.GetPoints()
    if pts is None:
        return np.zeros((0, 3))
    return numpy_support.vtk_to_numpy(pts.GetData()).astype(np.float64)


def write_frame_meshes(probs: np.ndarray, affine_ras: np.ndarray, out_dir: str | Path,
                       frame: int) -> list[Path]:
    """``probs (C, X, Y, Z)`` class probabilities of one frame -> ``frame_NN_{LV,MYO,RV}.vtp``.

    The grid is padded by one voxel of zero probability so surfaces close at the crop edges.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pad_aff = np.array(affine_ras, dtype=np.float64, copy=True)
    pad_aff[:3, 3] -= pad_aff[:3, :3].sum(1)
    paths = []
    for c, name in CLASS_NAMES.items():
        field = np.pad(probs[c], 1)
        poly = surface_from_field(field, pad_aff)
        paths.append(write_vtp(poly, out_dir / f"frame_{frame:02d}_{name}.vtp"))
    return paths
