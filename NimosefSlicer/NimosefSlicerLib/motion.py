"""The engine's dense motion as Slicer transforms: one grid transform per frame.

``motion/from_ed_NN.nii.gz`` (an ITK displacement field: LPS mm vectors on the input's grid)
holds ``u_NN``: the tissue at end-diastole (ED) position ``p`` is at ``p + u_NN(p)`` in frame
``NN``. Slicer reads such a file (*Add Data*, transform) as the transform *from parent*:
``TransformFromParent(p) = p + u(p)``, ITK's resampling convention. The module puts ``u_NN``
in the transform *to parent* instead, so that whatever is placed under the frame's transform
(markups, a model or a segmentation of the ED frame) is shown where its tissue is in frame
``NN``: ``TransformPointToParent(p) = p + u_NN(p)`` (trilinear on the field's grid, the edge
value beyond it, as the engine samples it). Images resampled through it use VTK's iterative
inverse, which is the engine's ``to_ed_NN`` up to its inversion error (``summary.json``).

Arrays: ``vectors (X, Y, Z, 3)`` float32 RAS mm on a grid whose voxel ``(i, j, k)`` is at
``affine_ras @ (i, j, k, 1)``; points ``(N, 3)`` RAS mm. Needs only SimpleITK and VTK (what
Slicer ships).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

from .cine import matrix_from_array

MOTION_DIR = "motion"
ED_FRAME = "NIMOSEF.edFrame"
"""Attribute of the motion sequence: the frame (0-based) its fields start from."""
LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def field_path(out_dir: str | Path, frame: int) -> Path:
    """``out_dir/motion/from_ed_NN.nii.gz`` of a 0-based frame."""
    return Path(out_dir) / MOTION_DIR / f"from_ed_{int(frame):02d}.nii.gz"


def read_displacement_field(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An ITK displacement field file -> ``(vectors (X, Y, Z, 3) float32 RAS mm, affine_ras
    (4, 4))``. Raises ``NimosefInputError`` naming the file when it is missing or not a 3D
    field of 3-vectors."""
    import SimpleITK as sitk

    from nimosef_engine.core.errors import NimosefInputError

    from .results import read_sitk_image, sitk_affine_ras

    path = Path(path)
    image = read_sitk_image(path, "missing from the segment-track output folder")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 3:
        raise NimosefInputError(path, f"not a displacement field: {image.GetDimension()}D, "
                                      f"{image.GetNumberOfComponentsPerPixel()} components")
    array = sitk.GetArrayFromImage(image).astype(np.float32)  # (Z, Y, X, 3), LPS
    vectors = np.ascontiguousarray(array.transpose(2, 1, 0, 3)) * LPS_TO_RAS.astype(np.float32)
    if not np.all(np.isfinite(vectors)):
        raise NimosefInputError(path, "holds NaN or infinite displacements")
    return vectors, sitk_affine_ras(image)


def crop_to_support(vectors: np.ndarray, affine_ras: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The field cut in-plane to its non-zero voxels plus one voxel of zeros (where the grid
    has it), all slices kept: the same transform everywhere (beyond a grid its edge value
    holds, zero here), a fraction of the memory. An all-zero field keeps a 2 x 2 corner."""
    moving = np.abs(vectors).sum(-1) > 0
    if not moving.any():
        lo, hi = np.zeros(2, int), np.minimum(vectors.shape[:2], 2)
    else:
        idx = np.argwhere(moving.any(axis=2))
        lo = np.maximum(idx.min(0) - 1, 0)
        hi = np.minimum(idx.max(0) + 2, vectors.shape[:2])
    out = np.ascontiguousarray(vectors[lo[0]:hi[0], lo[1]:hi[1]])
    shifted = np.array(affine_ras, dtype=np.float64)
    shifted[:3, 3] = affine_ras[:3, :3] @ np.array([lo[0], lo[1], 0.0]) + affine_ras[:3, 3]
    return out, shifted


def grid_transform(vectors: np.ndarray, affine_ras: np.ndarray):
    """A ``vtkOrientedGridTransform`` mapping ``p -> p + u(p)`` (trilinear), ``u`` the
    ``(X, Y, Z, 3)`` RAS mm field on the grid ``affine_ras``."""
    affine_ras = np.asarray(affine_ras, dtype=np.float64)
    spacing = np.linalg.norm(affine_ras[:3, :3], axis=0)
    direction = np.eye(4)
    direction[:3, :3] = affine_ras[:3, :3] / spacing
    image = vtk.vtkImageData()
    image.SetDimensions(*vectors.shape[:3])
    image.SetOrigin(*affine_ras[:3, 3])
    image.SetSpacing(*spacing)
    flat = np.ascontiguousarray(np.asarray(vectors, np.float32).transpose(2, 1, 0, 3)
                                ).reshape(-1, 3)  # VTK: x fastest
    image.GetPointData().SetScalars(numpy_to_vtk(flat, deep=True))
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(image)
    transform.SetGridDirectionMatrix(matrix_from_array(direction))
    transform.SetInterpolationModeToLinear()
    return transform


def new_motion_node(vectors: np.ndarray, affine_ras: np.ndarray, name: str = ""):
    """A grid transform node (not in a scene) whose transform to parent is ``p -> p + u(p)``
    (see the module docstring for why not from parent)."""
    node = slicer.vtkMRMLGridTransformNode()
    node.SetName(name)
    node.SetAndObserveTransformToParent(grid_transform(vectors, affine_ras))
    return node


def transform_points(transform, points_ras: np.ndarray) -> np.ndarray:
    """``(N, 3)`` RAS points through a VTK transform, or a transform node's transform to
    parent -> ``(N, 3)``."""
    if hasattr(transform, "GetTransformToParent"):
        transform = transform.GetTransformToParent()
    points_ras = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3)
    source, moved = vtk.vtkPoints(), vtk.vtkPoints()
    source.SetData(numpy_to_vtk(np.ascontiguousarray(points_ras), deep=True))
    transform.TransformPoints(source, moved)
    if moved.GetNumberOfPoints() == 0:
        return np.zeros((0, 3))
    return vtk_to_numpy(moved.GetData()).astype(np.float64).reshape(-1, 3)


def displacements(transform, points_ras: np.ndarray) -> np.ndarray:
    """``u(p)`` ``(N, 3)`` mm at ``(N, 3)`` RAS points: ``transform(p) - p``."""
    points_ras = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3)
    return transform_points(transform, points_ras) - points_ras


def tracked_positions(motion_sequence, points_ed: np.ndarray) -> np.ndarray:
    """Where tissue at ED points ``(N, 3)`` is in every frame of a motion sequence:
    ``p + u_t(p)`` -> ``(T, N, 3)`` RAS mm."""
    points_ed = np.asarray(points_ed, dtype=np.float64).reshape(-1, 3)
    return np.stack([transform_points(motion_sequence.GetNthDataNode(t), points_ed)
                     for t in range(motion_sequence.GetNumberOfDataNodes())])


def use_linear_interpolation(motion_sequence) -> int:
    """Set every grid transform of a motion sequence to trilinear interpolation (Slicer reads
    grid transforms from files, e.g. a saved scene, as cubic); returns how many changed."""
    changed = 0
    for t in range(motion_sequence.GetNumberOfDataNodes()):
        node = motion_sequence.GetNthDataNode(t)
        grid = node.GetTransformToParentAs("vtkOrientedGridTransform", False)
        if grid is not None and grid.GetInterpolationMode() != vtk.VTK_LINEAR_INTERPOLATION:
            grid.SetInterpolationModeToLinear()
            node.Modified()
            changed += 1
    return changed
