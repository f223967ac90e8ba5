"""Real Slicer views rendered offscreen: slice and 3D views with Slicer's displayable managers.

The Slicer app draws its views with Qt widgets; without the app, the same MRML slice logic and
displayable managers (segmentation overlay, models, volume slices) render into an offscreen
VTK window, so tests and documentation see what a clinician sees. Needs a context from
:func:`context.create_headless_context` (its ``app_logic``) and an OpenGL that works
offscreen (EGL or OSMesa; set ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` headless).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

SLICE_MANAGERS = ("vtkMRMLVolumeGlyphSliceDisplayableManager",
                  "vtkMRMLModelSliceDisplayableManager",
                  "vtkMRMLSegmentationsDisplayableManager2D")
THREED_MANAGERS = ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                   "vtkMRMLModelDisplayableManager",
                   "vtkMRMLSegmentationsDisplayableManager3D")


class _OffscreenView:
    """Render window + renderer + displayable manager group for one MRML view."""

    def __init__(self, ctx, factory_class, managers: tuple[str, ...], size: tuple[int, int]):
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.SetSize(*size)
        self.renderer = vtk.vtkRenderer()
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        factory = factory_class.GetInstance()
        factory.SetMRMLApplicationLogic(ctx.app_logic)
        for name in managers:
            if not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)

    def render(self) -> np.ndarray:
        """Render and return the window as ``(H, W, 3)`` uint8, row 0 at the top."""
        self.managers.RequestRender()
        self.window.Render()
        return _grab(self.window)

    def close(self) -> None:
        self.window.Finalize()


class OffscreenSliceView(_OffscreenView):
    """A slice view (e.g. the Red/axial one) with its own slice logic."""

    def __init__(self, ctx, name: str = "Red", size: tuple[int, int] = (400, 400)):
        super().__init__(ctx, slicer.vtkMRMLSliceViewDisplayableManagerFactory,
                         SLICE_MANAGERS, size)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(ctx.app_logic)
        ctx.app_logic.GetSliceLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(ctx.scene)
        self.slice_node = self.logic.AddSliceNode(name)
        self.managers.SetMRMLDisplayableNode(self.slice_node)
        self.image_mapper = vtk.vtkImageMapper()
        self.image_mapper.SetColorWindow(255)
        self.image_mapper.SetColorLevel(127.5)
        self.image_actor = vtk.vtkActor2D()
        self.image_actor.SetMapper(self.image_mapper)
        self.image_actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(self.image_actor)
        self.logic.ResizeSliceNode(*size)

    def show(self, background_volume, orientation: str = "Axial",
             offset_ras: np.ndarray | None = None) -> None:
        """Show ``background_volume``; the slice plane goes through ``offset_ras`` (mm)."""
        composite = self.logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(background_volume.GetID())
        self.slice_node.SetOrientation(orientation)
        self.logic.RotateSliceToLowestVolumeAxes(False)
        self.logic.FitSliceToBackground()
        if offset_ras is not None:
            self.slice_node.JumpSliceByCentering(*[float(v) for v in offset_ras])
        self.logic.SnapSliceOffsetToIJK()
        self.image_mapper.SetInputConnection(self.logic.GetImageDataConnection())

    def xy_to_ras(self) -> np.ndarray:
        """(4, 4) matrix: view pixel ``(x, y, 0, 1)`` (origin bottom-left) -> RAS mm."""
        m = self.slice_node.GetXYToRAS()
        return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


class OffscreenThreeDView(_OffscreenView):
    """A 3D view: models, segmentation surfaces, glyphs."""

    def __init__(self, ctx, name: str = "1", size: tuple[int, int] = (400, 400)):
        super().__init__(ctx, slicer.vtkMRMLThreeDViewDisplayableManagerFactory,
                         THREED_MANAGERS, size)
        self.logic = slicer.vtkMRMLViewLogic()
        self.logic.SetMRMLApplicationLogic(ctx.app_logic)
        ctx.app_logic.GetViewLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(ctx.scene)
        self.view_node = self.logic.AddViewNode(name)
        self.view_node.SetBoxVisible(False)
        self.view_node.SetAxisLabelsVisible(False)
        self.managers.SetMRMLDisplayableNode(self.view_node)

    def fit(self, direction: int = slicer.vtkMRMLCameraNode.Anterior) -> None:
        """Point the camera at everything shown, from ``direction``."""
        camera_dm = self.managers.GetDisplayableManagerByClassName(
            "vtkMRMLCameraDisplayableManager")
        self.renderer.ResetCamera()
        if camera_dm is not None and camera_dm.GetCameraNode() is not None:
            camera_dm.GetCameraNode().RotateTo(direction)
        self.renderer.ResetCamera()
        self.renderer.ResetCameraClippingRange()


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W, 3)`` uint8 image as PNG (atomic)."""
    from nimosef_engine.core.atomic import atomic_path

    path = Path(path)
    h, w, _ = rgb.shape
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    from vtk.util.numpy_support import numpy_to_vtk

    data = numpy_to_vtk(np.ascontiguousarray(rgb[::-1]).reshape(-1, 3), deep=True,
                        array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(data)
    with atomic_path(path) as tmp:
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputData(image)
        writer.Write()
    return path


def labels_under_pixels(view: OffscreenSliceView, labels_xyz: np.ndarray,
                        affine_ras: np.ndarray) -> np.ndarray:
    """The label of the voxel under each pixel of a rendered slice view, ``(H, W)`` with row 0
    at the top (as :meth:`_OffscreenView.render` returns images); 0 outside the volume."""
    w, h = view.window.GetSize()
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    xy = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size), np.ones(xs.size)], 0)
    ras = view.xy_to_ras() @ xy
    ijk = np.linalg.solve(affine_ras, ras)[:3].T
    idx = np.rint(ijk).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.array(labels_xyz.shape)), axis=1)
    out = np.zeros(xs.size, dtype=labels_xyz.dtype)
    out[inside] = labels_xyz[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
    return out.reshape(h, w)[::-1]


def result_snapshot(ctx, cine, segmentation_sequence, path: str | Path, frame: int,
                    size: tuple[int, int] = (420, 420)) -> Path:
    """One picture of a result at ``frame``: the cine's slice with the most labelled voxels,
    with the segmentation overlay (left), and the 3D view with surfaces and arrows (right)."""
    from .cine import ijk_to_ras, volume_array_xyz

    cine.browser.SetSelectedItemNumber(int(frame))
    seg_proxy = cine.browser.GetProxyNode(segmentation_sequence)
    image = volume_array_xyz(cine.proxy)
    affine = ijk_to_ras(cine.proxy)
    labels = _labels_of(seg_proxy, image.shape, affine)
    k = int(np.argmax((labels > 0).sum(axis=(0, 1)))) if labels.any() else image.shape[2] // 2
    centre = affine @ np.array([image.shape[0] / 2, image.shape[1] / 2, k, 1.0])
    slice_view = OffscreenSliceView(ctx, "Red", size)
    three_d = OffscreenThreeDView(ctx, "1", size)
    try:
        slice_view.show(cine.proxy, "Axial", centre[:3])
        left = slice_view.render()
        three_d.fit()
        three_d.renderer.GetActiveCamera().Zoom(1.5)
        right = three_d.render()
    finally:
        slice_view.close()
        three_d.close()
    return save_png(np.concatenate([left, right], axis=1), path)


def _labels_of(segmentation_node, shape, affine) -> np.ndarray:
    """NIMOSEF label array ``(X, Y, Z)`` of a segmentation on the grid ``(shape, affine)``."""
    from .segments import segment_specs

    labels = np.zeros(shape, np.uint8)
    for spec in segment_specs():
        image = slicer.vtkOrientedImageData()
        segmentation_node.GetBinaryLabelmapRepresentation(spec.segment_id, image)
        if image.GetPointData().GetScalars() is None:
            continue
        m = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(m)
        seg_affine = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
        extent = image.GetExtent()
        dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
        mask = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).T > 0
        ijk = np.argwhere(mask) + np.array(extent[::2])
        ras = seg_affine[:3, :3] @ ijk.T + seg_affine[:3, 3:4]
        vox = np.rint(np.linalg.solve(affine[:3, :3], ras - affine[:3, 3:4])).astype(int).T
        ok = np.all((vox >= 0) & (vox < np.array(shape)), axis=1)
        labels[tuple(vox[ok].T)] = spec.label
    return labels


def chart_image(table_node, columns: dict[str, tuple[float, float, float]],
                size: tuple[int, int] = (480, 360), x_column: str = "frame",
                title: str = "") -> np.ndarray:
    """The volume curves of a table node as a line chart (VTK's chart, offscreen, as Slicer's
    plot view draws a plot chart), ``(H, W, 3)`` uint8. ``columns``: y column -> RGB 0..1."""
    view = vtk.vtkContextView()
    view.GetRenderWindow().SetOffScreenRendering(1)
    view.GetRenderWindow().SetSize(*size)
    view.GetRenderer().SetBackground(1.0, 1.0, 1.0)
    chart = vtk.vtkChartXY()
    view.GetScene().AddItem(chart)
    chart.SetShowLegend(True)
    chart.SetTitle(title)
    table = table_node.GetTable()
    for name, rgb in columns.items():
        line = chart.AddPlot(vtk.vtkChart.LINE)
        line.SetInputData(table, x_column, name)
        line.SetColor(*(int(255 * c) for c in rgb), 255)
        line.SetWidth(2.5)
    chart.GetAxis(vtk.vtkAxis.BOTTOM).SetTitle(x_column)
    chart.GetAxis(vtk.vtkAxis.LEFT).SetTitle("volume (mL)")
    view.GetRenderWindow().Render()
    return _grab(view.GetRenderWindow())


def text_image(lines: list[str], size: tuple[int, int], font_size: int = 15,
               background=(0.95, 0.95, 0.95), color=(0.1, 0.1, 0.1)) -> np.ndarray:
    """Lines of text rendered by VTK on a plain background, ``(H, W, 3)`` uint8."""
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(*background)
    window.AddRenderer(renderer)
    actors = []
    for k, line in enumerate(lines):
        actor = vtk.vtkTextActor()
        actor.SetInput(line)
        prop = actor.GetTextProperty()
        prop.SetFontSize(font_size)
        prop.SetColor(*color)
        prop.SetBold(line.startswith("# "))
        if line.startswith("# "):
            actor.SetInput(line[2:])
        actor.SetPosition(12, size[1] - (k + 1) * int(font_size * 1.6) - 6)
        renderer.AddViewProp(actor)
        actors.append(actor)
    window.Render()
    image = _grab(window)
    window.Finalize()
    return image


def _grab(window) -> np.ndarray:
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    w, h, _ = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, 3)[::-1].copy()


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pad or crop an image to ``size`` (W, H) (grey border)."""
    w, h = size
    out = np.full((h, w, 3), 200, np.uint8)
    ih, iw = min(h, image.shape[0]), min(w, image.shape[1])
    out[:ih, :iw] = image[:ih, :iw]
    return out


def slicer_layout_snapshot(ctx, results, path: str | Path, frame: int,
                           panel_lines: list[str], view_size: tuple[int, int] = (440, 330),
                           panel_width: int = 330) -> Path:
    """A picture laid out like Slicer's *Four-Up Plot* layout with the module panel: on the
    left the module's panel (its fields and results, as text), at the top the sequence
    toolbar (cine, frame), and four views: the short-axis slice (Red) with the segmentation
    overlay, the 3D view (surfaces, arrows), a long-axis reformat (Green) and the volume
    chart. Views are rendered offscreen by Slicer's displayable managers, the chart by VTK's
    chart from the module's table node; the panel and toolbar are drawn text, not Qt widgets.
    """
    from .cine import ijk_to_ras, volume_array_xyz
    from .segments import segment_specs

    cine = results.cine
    cine.browser.SetSelectedItemNumber(int(frame))
    seg_proxy = cine.browser.GetProxyNode(results.sequences["segmentation"])
    image = volume_array_xyz(cine.proxy)
    affine = ijk_to_ras(cine.proxy)
    labels = _labels_of(seg_proxy, image.shape, affine)
    k = int(np.argmax((labels > 0).sum(axis=(0, 1)))) if labels.any() else image.shape[2] // 2
    if labels.any():
        ci, cj = np.argwhere(labels[..., k] > 0).mean(axis=0)
    else:
        ci, cj = image.shape[0] / 2, image.shape[1] / 2
    centre = (affine @ np.array([ci, cj, k, 1.0]))[:3]
    red = OffscreenSliceView(ctx, "Red", view_size)
    green = OffscreenSliceView(ctx, "Green", view_size)
    three_d = OffscreenThreeDView(ctx, "1", view_size)
    try:
        red.show(cine.proxy, "Axial", centre)
        red.slice_node.SetFieldOfView(*(0.45 * np.array(red.slice_node.GetFieldOfView())))
        red_img = red.render()
        green.show(cine.proxy, "Coronal", centre)
        green_img = green.render()
        three_d.fit()
        three_d.renderer.GetActiveCamera().Zoom(1.4)
        three_d_img = three_d.render()
    finally:
        for view in (red, green, three_d):
            view.close()
    colors = {f"{s.segment_id}_mL": s.color for s in segment_specs()}
    chart = chart_image(results.table, colors, view_size, "frame", "NIMOSEF volume curves")
    gap = 4
    grid_w = 2 * view_size[0] + gap
    grid = np.full((2 * view_size[1] + gap, grid_w, 3), 60, np.uint8)
    for (r, c), tile in (((0, 0), red_img), ((0, 1), three_d_img), ((1, 0), green_img),
                         ((1, 1), chart)):
        y, x = r * (view_size[1] + gap), c * (view_size[0] + gap)
        grid[y:y + view_size[1], x:x + view_size[0]] = _fit(tile, view_size)
    n = cine.n_frames
    toolbar = text_image([f"Sequence browser: {cine.browser.GetName()}    |<  <  >  >|   "
                          f"frame {int(frame) + 1} / {n}    (play: cine, segmentation, "
                          f"super-resolved, arrows together)"],
                         (panel_width + grid_w, 34), font_size=14,
                         background=(0.86, 0.88, 0.92))
    panel = text_image(panel_lines, (panel_width, grid.shape[0]), font_size=14)
    body = np.concatenate([panel, grid], axis=1)
    return save_png(np.concatenate([toolbar, body], axis=0), path)
