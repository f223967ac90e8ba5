"""Displacement arrows: one glyph polydata per frame from points and vectors (RAS mm).

The module puts the arrows on the end-diastolic myocardium's surface (the closed surface the
3D view shows, :func:`segment_surface_points`), each along that point's displacement to the
frame shown (``motion/from_ed_NN.nii.gz`` sampled there: :mod:`.motion`)."""

from __future__ import annotations

import numpy as np
import vtk
from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

MAGNITUDE_ARRAY = "displacement_mm"
MAX_ARROWS_PER_FRAME = 1500

# One arrow source for every glyph filter: a temporary source given to vtkGlyph3D has been
# seen to crash Update() once Python dropped it.
_ARROW = vtk.vtkArrowSource()
_ARROW.SetTipResolution(8)
_ARROW.SetShaftResolution(8)


def subsample_indices(n_points: int, max_points: int = MAX_ARROWS_PER_FRAME) -> np.ndarray:
    """Evenly spaced indices keeping at most ``max_points`` of ``n_points`` (deterministic)."""
    if n_points <= max_points:
        return np.arange(n_points)
    return np.unique(np.linspace(0, n_points - 1, max_points).round().astype(np.int64))


def displacement_glyphs(points_ras: np.ndarray, vectors_ras: np.ndarray,
                        scale: float = 1.0) -> vtk.vtkPolyData:
    """Arrows at ``points_ras`` ``(N, 3)`` along ``vectors_ras`` ``(N, 3)`` (mm), ``scale``
    times as long as the displacement; point scalars ``displacement_mm`` = |vector| (mm) on
    every vertex of an arrow, for colouring by magnitude.
    """
    points_ras = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3)
    vectors_ras = np.asarray(vectors_ras, dtype=np.float64).reshape(-1, 3)
    if points_ras.shape != vectors_ras.shape:
        raise ValueError(f"points {points_ras.shape} and vectors {vectors_ras.shape} differ")
    source = vtk.vtkPolyData()
    pts = vtk.vtkPoints()
    pts.SetData(numpy_to_vtk(np.ascontiguousarray(points_ras), deep=True))
    source.SetPoints(pts)
    vectors = numpy_to_vtk(np.ascontiguousarray(vectors_ras), deep=True)
    vectors.SetName("displacement")
    magnitude = numpy_to_vtk(np.linalg.norm(vectors_ras, axis=1), deep=True)
    magnitude.SetName(MAGNITUDE_ARRAY)
    source.GetPointData().SetVectors(vectors)
    source.GetPointData().SetScalars(magnitude)

    glyph = vtk.vtkGlyph3D()
    glyph.SetInputData(source)
    glyph.SetSourceConnection(_ARROW.GetOutputPort())
    glyph.SetVectorModeToUseVector()
    glyph.SetScaleModeToScaleByVector()
    glyph.SetScaleFactor(float(scale))
    glyph.SetColorModeToColorByScalar()
    glyph.OrientOn()
    glyph.Update()
    out = vtk.vtkPolyData()
    out.DeepCopy(glyph.GetOutput())
    scalars = out.GetPointData().GetScalars()
    if scalars is not None:
        scalars.SetName(MAGNITUDE_ARRAY)
        out.GetPointData().SetActiveScalars(MAGNITUDE_ARRAY)
    return out


def glyph_magnitudes(polydata: vtk.vtkPolyData) -> np.ndarray:
    """The ``displacement_mm`` scalars of a glyph polydata (one per output vertex)."""
    array = polydata.GetPointData().GetArray(MAGNITUDE_ARRAY)
    return np.zeros(0) if array is None else vtk_to_numpy(array).copy()


def segment_surface_points(segmentation_node, segment_id: str) -> np.ndarray:
    """Points ``(N, 3)`` RAS mm of a segment's closed surface (computed if needed; empty for
    an empty segment)."""
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    if not segmentation.ContainsRepresentation(name):
        segmentation.CreateRepresentation(name)
    segment = segmentation.GetSegment(segment_id)
    surface = segment.GetRepresentation(name) if segment is not None else None
    if surface is None or surface.GetNumberOfPoints() == 0:
        return np.zeros((0, 3))
    return vtk_to_numpy(surface.GetPoints().GetData()).astype(np.float64).reshape(-1, 3)
