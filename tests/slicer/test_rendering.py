"""Real Slicer views offscreen (slicer-core displayable managers): the segmentation overlay
lands on the pixels of its voxels, and the 3D view shows surfaces and arrows per frame."""

from __future__ import annotations

import numpy as np
import pytest
from NimosefSlicerLib import offscreen, segments

SIZE = (320, 320)


@pytest.fixture
def views(ctx):
    try:
        slice_view = offscreen.OffscreenSliceView(ctx, "Red", SIZE)
        three_d = offscreen.OffscreenThreeDView(ctx, "1", SIZE)
    except Exception as exc:  # pragma: no cover - only without any OpenGL
        pytest.fail(f"offscreen OpenGL unavailable: {exc}")
    yield slice_view, three_d
    slice_view.close()
    three_d.close()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def overlay_masks(ctx, slice_view, seg_proxy, labels_xyz, affine, frame_name, out_dir):
    """Per segment: pixels the overlay changed (render with it - without it) and pixels whose
    voxel has that label."""
    display = seg_proxy.GetDisplayNode()
    display.SetVisibility(False)
    bare = slice_view.render().astype(int)
    display.SetVisibility(True)
    full = slice_view.render()
    offscreen.save_png(full, out_dir / f"slice_{frame_name}.png")
    truth = offscreen.labels_under_pixels(slice_view, labels_xyz, affine)
    result = {}
    for spec in segments.segment_specs():
        for other in segments.segment_specs():
            display.SetSegmentVisibility(other.segment_id, other is spec)
        changed = np.abs(slice_view.render().astype(int) - bare).sum(-1) > 30
        result[spec.segment_id] = (changed, truth == spec.label)
    for other in segments.segment_specs():
        display.SetSegmentVisibility(other.segment_id, True)
    return result


def test_slice_overlay_pixels_are_where_the_segmentation_is(ctx, gt_scene, views, tmp_path):
    slice_view, _ = views
    cine, labels, affine = gt_scene["cine"], gt_scene["labels"], gt_scene["affine"]
    seg_proxy = cine.browser.GetProxyNode(gt_scene["segmentation"])
    k = int(np.argmax((labels[..., 0] == 1).sum(axis=(0, 1))))  # slice with most LV
    centre_ras = affine @ np.array([labels.shape[0] / 2, labels.shape[1] / 2, k, 1.0])
    for t, name in ((0, "ED"), (1, "ES")):
        cine.browser.SetSelectedItemNumber(t)
        slice_view.show(cine.proxy, "Axial", centre_ras[:3])
        masks = overlay_masks(ctx, slice_view, seg_proxy, labels[..., t], affine, name, tmp_path)
        for segment_id, (drawn, truth) in masks.items():
            assert truth.sum() > 100, f"{name} {segment_id}: too few pixels to compare"
            assert iou(drawn, truth) > 0.8, \
                f"{name} {segment_id}: overlay IoU {iou(drawn, truth):.2f} with its voxels"
        # the overlay of the LV is not also drawn where the RV is
        assert iou(masks["LV"][0], masks["RV"][1]) < 0.05
    assert (tmp_path / "slice_ED.png").stat().st_size > 10_000


def test_3d_view_shows_surfaces_and_arrows_per_frame(ctx, gt_scene, views, tmp_path):
    _, three_d = views
    cine = gt_scene["cine"]
    seg_proxy = cine.browser.GetProxyNode(gt_scene["segmentation"])
    glyph_proxy = cine.browser.GetProxyNode(gt_scene["glyphs"])
    seg_display = seg_proxy.GetDisplayNode()
    lv_rgb = np.array(segments.segment_specs()[0].color) * 255

    def render(frame: int, only_lv: bool, glyphs_on: bool) -> np.ndarray:
        cine.browser.SetSelectedItemNumber(frame)
        for spec in segments.segment_specs():
            seg_display.SetSegmentVisibility(spec.segment_id, spec.segment_id == "LV" or
                                             not only_lv)
        seg_display.SetVisibility(True)
        glyph_proxy.GetDisplayNode().SetVisibility(glyphs_on)
        three_d.fit()
        return three_d.render()

    # fixed camera for both frames: fit on ED, then keep it
    render(0, True, False)
    areas = []
    for t in (0, 1):
        cine.browser.SetSelectedItemNumber(t)
        img = three_d.render()
        lit = np.abs(img.astype(float) - lv_rgb).max(-1) < 90  # shaded LV red
        areas.append(int(lit.sum()))
    assert areas[0] > 1.2 * areas[1] > 0, f"LV silhouette ED {areas[0]} vs ES {areas[1]}"

    seg_display.SetVisibility(False)
    glyph_proxy.GetDisplayNode().SetVisibility(True)
    cine.browser.SetSelectedItemNumber(1)
    three_d.fit()
    arrows = three_d.render()
    background = arrows[0, 0].astype(int)
    assert (np.abs(arrows.astype(int) - background).sum(-1) > 60).sum() > 500, "no arrows drawn"
    for t, name in ((0, "ED"), (1, "ES")):
        offscreen.save_png(render(t, False, True), tmp_path / f"3d_{name}.png")
        assert (tmp_path / f"3d_{name}.png").stat().st_size > 5_000


def test_result_snapshot_of_expert_scene(ctx, gt_scene, tmp_path):
    """The documentation picture: slice + 3D side by side, at ES."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    path = offscreen.result_snapshot(ctx, gt_scene["cine"], gt_scene["segmentation"],
                                     tmp_path / "result.png", 1, size=(240, 240))
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    assert reader.GetOutput().GetDimensions()[:2] == (480, 240)
    rgb = vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars()).reshape(240, 480, -1)
    lv = np.array(segments.segment_specs()[0].color) * 255
    # the LV overlay colour is on the left (slice) half: the slice through the most LV
    left = np.abs(rgb[:, :240, :3].astype(float) - lv).max(-1) < 60
    assert left.sum() > 50
