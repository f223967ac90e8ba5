"""Segments: names, SNOMED CT terminology, colours, voxel content, synchronised playback."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from NimosefSlicerLib import segments


def test_specs_come_from_the_shipped_terminology():
    specs = segments.segment_specs()
    assert [(s.label, s.segment_id) for s in specs] == [(1, "LV"), (2, "MYO"), (3, "RV")]
    assert [s.code_value for s in specs] == ["87878005", "74281007", "53085002"]
    assert len({s.color for s in specs}) == 3


def test_terminology_entries_resolve_in_slicer(ctx):
    """Each segment's entry deserialises with Slicer's terminology logic to its SNOMED code and
    the recommended colour of the loaded .term.json."""
    logic = ctx.terminologies_logic
    for spec in segments.segment_specs():
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(spec.terminology, entry)
        assert entry.GetTypeObject().GetCodeValue() == spec.code_value
        assert entry.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
        assert entry.GetCategoryObject().GetCodeValue() == "123037004"
        found = slicer.vtkSlicerTerminologyEntry()
        assert logic.FindTypeInTerminologyBy3dSlicerLabel(entry.GetTerminologyContextName(),
                                                           spec.name, found)
        rgb = np.array(found.GetTypeObject().GetRecommendedDisplayRGBValue()) / 255.0
        np.testing.assert_allclose(rgb, spec.color, atol=1e-6)


def test_segmentation_sequence_matches_expert_labels(gt_scene):
    cine, labels = gt_scene["cine"], gt_scene["labels"]
    sequence = gt_scene["segmentation"]
    assert cine.browser.IsSynchronizedSequenceNode(sequence.GetID(), True)
    proxy = cine.browser.GetProxyNode(sequence)
    counts_per_frame = []
    for t in (0, 1):
        cine.browser.SetSelectedItemNumber(t)
        counts = segments.segment_voxel_counts(proxy)
        want = {s.segment_id: int((labels[..., t] == s.label).sum())
                for s in segments.segment_specs()}
        assert counts == want
        counts_per_frame.append(counts)
        segmentation = proxy.GetSegmentation()
        assert [segmentation.GetNthSegment(i).GetName() for i in range(3)] == \
            ["LV blood pool", "LV myocardium", "RV blood pool"]
        assert segmentation.ContainsRepresentation("Closed surface")
    # the LV empties from ED to ES (patient090: a real contraction)
    assert counts_per_frame[0]["LV"] > 1.3 * counts_per_frame[1]["LV"]
    display = proxy.GetDisplayNode()
    assert display.GetVisibility3D() and display.GetVisibility2DFill()


def test_rejects_labels_outside_nimosef_range():
    labels = np.zeros((4, 4, 2), np.uint8)
    labels[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[7\]"):
        segments.new_segmentation_node(labels, np.eye(4))
