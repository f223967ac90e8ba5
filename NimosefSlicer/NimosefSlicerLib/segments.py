"""NIMOSEF labels as Slicer segments: names, terminology codes and standard colours.

Labels (DESIGN.md): 1 LV blood pool, 2 LV myocardium, 3 RV blood pool. Codes and colours come
from the shipped terminology ``Resources/Terminologies/NimosefCardiac.term.json`` (one source
of truth); the segment IDs are the same in every frame so that a segmentation sequence keeps
its display properties while it plays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import slicer
import vtk

from .cine import new_volume_node
from .context import TERMINOLOGY_FILE


@dataclass(frozen=True)
class SegmentSpec:
    """One NIMOSEF label as a segment: ``label`` value, stable ``segment_id``, ``name``,
    SNOMED CT type code, colour (RGB 0..1) and the serialized Slicer terminology entry."""

    label: int
    segment_id: str
    name: str
    code_value: str
    code_meaning: str
    color: tuple[float, float, float]
    terminology: str


_SEGMENT_IDS = {"LV blood pool": ("LV", 1), "LV myocardium": ("MYO", 2),
                "RV blood pool": ("RV", 3)}


@lru_cache(maxsize=1)
def segment_specs() -> tuple[SegmentSpec, ...]:
    """The three segments in label order, read from the shipped terminology file."""
    term = json.loads(TERMINOLOGY_FILE.read_text(encoding="utf-8"))
    context = term["SegmentationCategoryTypeContextName"]
    category = term["SegmentationCodes"]["Category"][0]
    cat = (f"{category['CodingSchemeDesignator']}^{category['CodeValue']}"
           f"^{category['CodeMeaning']}")
    specs = []
    for entry in category["Type"]:
        segment_id, label = _SEGMENT_IDS[entry["3dSlicerLabel"]]
        typ = f"{entry['CodingSchemeDesignator']}^{entry['CodeValue']}^{entry['CodeMeaning']}"
        # Slicer's serialized terminology: context~category~type~modifier~region context~
        # region~region modifier
        terminology = f"{context}~{cat}~{typ}~^^~~^^~^^"
        rgb = tuple(c / 255.0 for c in entry["recommendedDisplayRGBValue"])
        specs.append(SegmentSpec(label, segment_id, entry["3dSlicerLabel"], entry["CodeValue"],
                                 entry["CodeMeaning"], rgb, terminology))
    return tuple(sorted(specs, key=lambda s: s.label))


def new_segmentation_node(labels_xyz: np.ndarray, affine_ras: np.ndarray, name: str = "",
                          closed_surfaces: bool = True):
    """A segmentation node (not in any scene) from a ``(X, Y, Z)`` NIMOSEF label array.

    Segments LV / MYO / RV always exist (empty when a label is absent), with terminology and
    colours; the binary labelmap is the source representation, and closed surfaces are
    computed when ``closed_surfaces``.
    """
    labels = np.asarray(labels_xyz)
    unknown = sorted(set(np.unique(labels).tolist()) - {0, 1, 2, 3})
    if unknown:
        raise ValueError(f"unexpected label values {unknown} (NIMOSEF labels are 0..3)")
    segmentation_node = slicer.vtkMRMLSegmentationNode()
    segmentation_node.SetName(name)
    segmentation = segmentation_node.GetSegmentation()
    segmentation.SetSourceRepresentationName(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    ids = vtk.vtkStringArray()
    for spec in segment_specs():
        segmentation.AddEmptySegment(spec.segment_id, spec.name, spec.color)
        segment = segmentation.GetSegment(spec.segment_id)
        segment.SetTerminology(spec.terminology)
        segment.SetLabelValue(spec.label)
        ids.InsertNextValue(spec.segment_id)
    labelmap = new_volume_node(labels.astype(np.uint8), affine_ras, labelmap=True)
    # The node is not in a scene yet (it goes into a sequence): the import's attempt to
    # add display nodes logs an error that means nothing here, so it is muted.
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap, segmentation_node, ids)
    finally:
        vtk.vtkObject.GlobalWarningDisplayOn()
    if not ok:
        raise RuntimeError(f"cannot import the labelmap into segmentation '{name}'")
    if closed_surfaces:  # the node has no scene yet: convert without display nodes
        segmentation.CreateRepresentation(
            slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
    return segmentation_node


def style_segmentation_display(segmentation_node, show_3d: bool = True) -> None:
    """Default display nodes, 2D fill/outline and (optionally) 3D surfaces on."""
    segmentation_node.CreateDefaultDisplayNodes()
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetOpacity2DFill(0.5)
    display.SetVisibility3D(show_3d)
    display.SetOpacity3D(0.5)  # half-transparent, so the arrows on the walls stay visible
    display.SetPreferredDisplayRepresentationName3D(
        slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())


def segment_voxel_counts(segmentation_node) -> dict[str, int]:
    """Number of labelmap voxels of each segment id (a quick content check)."""
    counts = {}
    for spec in segment_specs():
        image = slicer.vtkOrientedImageData()
        segmentation_node.GetBinaryLabelmapRepresentation(spec.segment_id, image)
        if image.GetPointData().GetScalars() is None:
            counts[spec.segment_id] = 0
            continue
        from vtk.util.numpy_support import vtk_to_numpy

        counts[spec.segment_id] = int(np.count_nonzero(
            vtk_to_numpy(image.GetPointData().GetScalars())))
    return counts
