"""Read a segment-track output folder (DESIGN.md) into the scene, synchronised to the cine.

Every output sequence takes the cine's index values and joins the cine's browser, so one
play button animates the cine, the segmentation, the super-resolved intensities, the motion
(a grid transform per frame, :mod:`.motion`) and the arrows. Result nodes carry the
attribute ``NIMOSEF.role`` so that a re-run replaces them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import curves, glyphs, motion
from . import strain as strain_lib
from .cine import (
    ROLE,
    CineNodes,
    ijk_to_ras,
    new_volume_node,
    set_sequence_frames,
    set_volume_array,
)
from .segments import new_segmentation_node, segment_specs, style_segmentation_display

INPUT = "NIMOSEF.inputSequenceID"
OUTPUT_DIR = "NIMOSEF.outputDir"
RES_FACTOR = "NIMOSEF.resFactorZ"
SUMMARY = "NIMOSEF.summary"

SUMMARY_KEYS = ("LV_EDV_mL", "LV_ESV_mL", "LV_SV_mL", "LV_EF_pct", "RV_EDV_mL", "RV_ESV_mL",
                "RV_EF_pct", "MYO_mass_g", "ed_frame", "es_frame", "n_frames")


@dataclass
class NimosefResults:
    """Result nodes of one run. Sequences live in the cine's browser; ``proxies`` maps a role
    (``segmentation``, ``superres``, ``motion``, ``glyphs``) to the node the browser shows;
    ``strain_table`` / ``strain_chart`` (global strain per frame) and ``peak_table`` (peak
    strain per AHA segment) exist when the motion was imported.

    ``subject`` holds the fitted ``subject.nimosef`` (bytes) so that the z-resolution slider
    can re-sample after the run's work folder is gone; ``output_dir`` is the engine's output
    folder, which exists only while it is kept."""

    cine: CineNodes
    sequences: dict[str, Any]
    proxies: dict[str, Any]
    table: Any
    chart: Any
    summary: dict
    output_dir: Path
    res_factor_z: int
    extra_nodes: list = field(default_factory=list)
    superres_dir: Path | None = None  # where the shown rec_zF.nii.gz lives, after a resample
    subject: bytes | None = None
    prior: str | None = None  # the prior the run was fitted with (None: the bundled one)
    strain_table: Any = None
    strain_chart: Any = None
    peak_table: Any = None

    @property
    def superres_source(self) -> Path:
        """Folder of the super-resolved volume the scene shows."""
        return self.superres_dir or self.output_dir


def output_file(out_dir: Path, name: str) -> Path:
    """A contract file of the output folder; ``NimosefInputError`` if it is missing."""
    from nimosef_engine.core.errors import NimosefInputError

    path = Path(out_dir) / name
    if not path.exists():
        raise NimosefInputError(path, "missing from the segment-track output folder")
    return path


def read_summary(out_dir: Path) -> dict:
    """``summary.json`` as a dict; checks the keys the panel shows."""
    from nimosef_engine.core.errors import NimosefInputError

    path = output_file(out_dir, "summary.json")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise NimosefInputError(path, f"not valid JSON ({exc})") from None
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise NimosefInputError(path, f"missing keys {missing}")
    return summary


def quality_text(summary: dict) -> str:
    """The result's quality verdict for the panel: ``ok``, or ``CHECK: reasons`` /
    ``FAIL: reasons`` (``summary.json``'s ``quality``); ``-`` for results without one."""
    q = summary.get("quality") or {}
    verdict = q.get("verdict")
    if not verdict:
        return "-"
    if verdict == "ok":
        return "ok"
    return f"{verdict.upper()}: " + "; ".join(q.get("reasons", []))


def nibabel_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nibabel") is not None


def read_output_nifti(path: str | Path, ndim: int, dtype=np.float32
                      ) -> tuple[np.ndarray, np.ndarray]:
    """An engine output NIfTI as ``(array (X, Y, Z[, T]), affine_ras (4, 4))``.

    With nibabel (installed with the module's requirements) the engine's own reader; without
    it (a bare Slicer: the self-test on the build machines) SimpleITK, which Slicer ships.
    The engine writes matching qform, sform and pixdim, so both give the same voxels and
    geometry (tests/slicer/test_light_selftest.py compares them on a real output folder).
    """
    if nibabel_available():
        from nimosef_engine.io.nifti import load_nifti

        return load_nifti(path, ndim=ndim, dtype=dtype)
    return _read_nifti_sitk(Path(path), ndim, dtype)


def read_sitk_image(path: Path, absent: str = "file not found"):
    """A NIfTI file as a SimpleITK image; raises ``NimosefInputError`` naming ``path`` when it
    is missing (``absent``: the problem to state) or unreadable."""
    import SimpleITK as sitk

    from nimosef_engine.core.errors import NimosefInputError

    if not path.is_file():
        raise NimosefInputError(path, absent)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise NimosefInputError(path, f"not a readable NIfTI file ({str(exc).strip()[:120]})"
                                ) from None


def _read_nifti_sitk(path: Path, ndim: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    from nimosef_engine.core.errors import NimosefInputError

    image = read_sitk_image(path)
    array = sitk.GetArrayFromImage(image)  # (T, Z, Y, X) or (Z, Y, X)
    data = np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1]))
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != ndim:
        raise NimosefInputError(path, f"expected a {ndim}D image, got {data.ndim}D")
    return data.astype(dtype, copy=False), sitk_affine_ras(image)


def sitk_affine_ras(image) -> np.ndarray:
    """The (4, 4) voxel -> RAS matrix of the first three axes of a SimpleITK image (LPS)."""
    dim = image.GetDimension()
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing()[:3])
    affine[:3, 3] = image.GetOrigin()[:3]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS -> RAS


def _tag(node, role: str, cine: CineNodes) -> None:
    node.SetAttribute(ROLE, role)
    node.SetAttribute(INPUT, cine.sequence.GetID())


def _index_values(cine: CineNodes) -> list[str]:
    return [cine.sequence.GetNthIndexValue(t) for t in range(cine.n_frames)]


def _check_frames(path: Path, n_frames: int, cine: CineNodes) -> None:
    from nimosef_engine.core.errors import NimosefInputError

    if n_frames != cine.n_frames:
        raise NimosefInputError(path, f"{n_frames} frames, the cine has {cine.n_frames}")


def _detached_output_sequence(cine: CineNodes, name: str, role: str):
    """An output sequence with the cine's index, not yet in the scene (filled frame by
    frame, added by :func:`_attach` once complete, so a failure leaves the scene as it was)."""
    import slicer

    sequence = slicer.vtkMRMLSequenceNode()
    sequence.SetName(name)
    sequence.SetIndexName(cine.sequence.GetIndexName())
    sequence.SetIndexUnit(cine.sequence.GetIndexUnit())
    sequence.SetIndexType(cine.sequence.GetIndexType())
    _tag(sequence, role, cine)
    return sequence


def _attach(ctx, cine: CineNodes, sequence):
    """Add a filled output sequence to the scene and to the cine's browser; returns the proxy."""
    ctx.scene.AddNode(sequence)
    cine.browser.AddSynchronizedSequenceNode(sequence)
    ctx.sequences_logic.UpdateProxyNodesFromSequences(cine.browser)
    proxy = cine.browser.GetProxyNode(sequence)
    proxy.SetName(sequence.GetName())
    _tag(proxy, sequence.GetAttribute(ROLE), cine)
    return proxy


def _segmentation_frames(sequence, labels_xyzt: np.ndarray, affine_ras: np.ndarray,
                         values: list[str]) -> Iterator[str]:
    """Fill ``sequence`` with one segmentation per frame (closed surfaces computed); yields
    after each frame."""
    name = sequence.GetName()
    for t, value in enumerate(values):
        node = new_segmentation_node(labels_xyzt[..., t], affine_ras, f"{name}_{t:02d}")
        sequence.SetDataNodeAtValue(node, value)
        yield f"segmentation frame {t + 1}/{len(values)}"


def _volume_frames(sequence, frames_xyzt: np.ndarray, affine_ras: np.ndarray,
                   values: list[str]) -> Iterator[str]:
    name = sequence.GetName()
    for t, value in enumerate(values):
        sequence.SetDataNodeAtValue(
            new_volume_node(frames_xyzt[..., t], affine_ras, f"{name}_{t:02d}"), value)
        yield f"super-resolved frame {t + 1}/{len(values)}"


def _glyph_frames(sequence, motion: dict[int, tuple[np.ndarray, np.ndarray]],
                  values: list[str], scale: float) -> Iterator[str]:
    import slicer

    name = sequence.GetName()
    for t, value in enumerate(values):
        points, vectors = motion.get(t, (np.zeros((0, 3)), np.zeros((0, 3))))
        keep = glyphs.subsample_indices(len(points))
        model = slicer.vtkMRMLModelNode()
        model.SetName(f"{name}_{t:02d}")
        model.SetAndObservePolyData(glyphs.displacement_glyphs(points[keep], vectors[keep],
                                                               scale))
        sequence.SetDataNodeAtValue(model, value)
        yield f"arrows frame {t + 1}/{len(values)}"


def _style_glyphs(ctx, proxy, motion: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    proxy.CreateDefaultDisplayNodes()
    display = proxy.GetDisplayNode()
    display.SetActiveScalarName(glyphs.MAGNITUDE_ARRAY)
    display.SetScalarVisibility(True)
    display.SetAndObserveColorNodeID(_magnitude_color_node_id(ctx.scene))
    display.SetScalarRangeFlag(display.UseManualScalarRange)
    peak = max((float(np.linalg.norm(v, axis=1).max()) for _, v in motion.values() if len(v)),
               default=1.0)
    display.SetScalarRange(0.0, max(peak, 1e-3))
    display.SetVisibility2D(False)


def add_segmentation_sequence(ctx, cine: CineNodes, labels_xyzt: np.ndarray,
                              affine_ras: np.ndarray, name: str):
    """A segmentation sequence from ``(X, Y, Z, T)`` NIMOSEF labels, synchronised to the cine
    (closed surfaces computed per frame, 3D display on). Returns (sequence, proxy)."""
    sequence = _detached_output_sequence(cine, name, "segmentation")
    for _ in _segmentation_frames(sequence, labels_xyzt, affine_ras, _index_values(cine)):
        pass
    proxy = _attach(ctx, cine, sequence)
    style_segmentation_display(proxy, show_3d=True)
    return sequence, proxy


def read_motion_fields(out_dir: Path, n_frames: int, affine_ras: np.ndarray
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``motion/from_ed_NN.nii.gz`` of every frame, each cut to where it moves
    (:func:`motion.crop_to_support`): ``[(vectors (X, Y, Z, 3) RAS mm, affine_ras)] * T``.
    ``NimosefInputError`` names a missing file or one not on the cine's grid
    ``affine_ras``."""
    from nimosef_engine.core.errors import NimosefInputError

    fields = []
    for t in range(n_frames):
        path = motion.field_path(out_dir, t)
        vectors, affine = motion.read_displacement_field(path)
        if not np.allclose(affine, affine_ras, atol=1e-3):
            raise NimosefInputError(path, "not on the grid of seg.nii.gz")
        fields.append(motion.crop_to_support(vectors, affine))
    return fields


def motion_ed_frame(summary: dict) -> int:
    """The frame the motion fields start from (``summary.json``: ``motion.ed_frame``)."""
    return int((summary.get("motion") or {}).get("ed_frame", summary["ed_frame"]))


def _motion_frames(sequence, fields: list[tuple[np.ndarray, np.ndarray]],
                   values: list[str]) -> Iterator[str]:
    """Fill ``sequence`` with one grid transform node per frame (ED -> frame, to parent)."""
    name = sequence.GetName()
    for t, value in enumerate(values):
        sequence.SetDataNodeAtValue(motion.new_motion_node(*fields[t], f"{name}_{t:02d}"),
                                    value)
        yield f"motion frame {t + 1}/{len(values)}"


def myocardium_arrows(ed_segmentation, fields: list[tuple[np.ndarray, np.ndarray]]
                      ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Arrows on the ED myocardium's closed surface (at most
    :data:`glyphs.MAX_ARROWS_PER_FRAME` of its points, the same in every frame), each along
    the frame's ``from_ed`` field there: ``{frame: (points (N, 3), vectors (N, 3))}`` RAS mm."""
    points = glyphs.segment_surface_points(ed_segmentation, "MYO")
    points = points[glyphs.subsample_indices(len(points))]
    return {t: (points, motion.displacements(motion.grid_transform(*field), points))
            for t, field in enumerate(fields)}


def add_glyph_sequence(ctx, cine: CineNodes,
                       motion: dict[int, tuple[np.ndarray, np.ndarray]], name: str,
                       scale: float = 1.0):
    """A model sequence of arrows, one model per frame from ``{frame: (points, vectors)}``
    (RAS mm), coloured by |displacement|, synchronised to the cine. Returns (sequence, proxy)."""
    sequence = _detached_output_sequence(cine, name, "glyphs")
    for _ in _glyph_frames(sequence, motion, _index_values(cine), scale):
        pass
    proxy = _attach(ctx, cine, sequence)
    _style_glyphs(ctx, proxy, motion)
    return sequence, proxy


def _magnitude_color_node_id(scene) -> str:
    for node_id in ("vtkMRMLColorTableNodeFileViridis.txt", "vtkMRMLColorTableNodeRainbow"):
        if scene.GetNodeByID(node_id) is not None:
            return node_id
    return "vtkMRMLColorTableNodeRainbow"


def _add_curves(ctx, cine: CineNodes, table_curves: dict, summary: dict, name: str):
    table = curves.add_volume_table(ctx.scene, table_curves, f"{name} volumes")
    table.SetAttribute(SUMMARY, json.dumps(summary))
    _tag(table, "table", cine)
    colors = {f"{s.segment_id}_mL": s.color for s in segment_specs()}
    chart = curves.add_volume_chart(ctx.scene, table, colors, f"{name} volume curves")
    _tag(chart, "chart", cine)
    return table, chart


def _add_strain(ctx, cine: CineNodes, strain: dict, volume_curves: dict, name: str) -> dict:
    """Global strain table and chart, peak strain per AHA segment table (tagged)."""
    table = strain_lib.add_strain_table(ctx.scene, strain, volume_curves, f"{name} strain")
    _tag(table, "strain_table", cine)
    chart = strain_lib.add_strain_chart(ctx.scene, table, f"{name} strain curves")
    _tag(chart, "strain_chart", cine)
    peak = strain_lib.add_peak_table(ctx.scene, strain, f"{name} peak strain (AHA segments)")
    _tag(peak, "peak_table", cine)
    return {"strain_table": table, "strain_chart": chart, "peak_table": peak}


def _remove_with_dependents(scene, node) -> None:
    """Remove a node with its display and storage nodes (the bare scene keeps them)."""
    dependents = []
    if hasattr(node, "GetNumberOfDisplayNodes"):
        dependents += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if hasattr(node, "GetNumberOfStorageNodes"):
        dependents += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
    for dependent in [node] + dependents:
        if dependent is not None and scene.IsNodePresent(dependent):
            scene.RemoveNode(dependent)


def remove_results(ctx, cine: CineNodes) -> int:
    """Remove every result node of earlier runs on this cine (sequences, their proxies, table,
    chart and plot series); returns how many tagged nodes were removed."""
    scene = ctx.scene
    doomed = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if node.GetAttribute(ROLE) and node.GetAttribute(INPUT) == cine.sequence.GetID():
            doomed.append(node)
    extra = []
    for node in doomed:
        if node.IsA("vtkMRMLSequenceNode"):
            proxy = cine.browser.GetProxyNode(node)
            if proxy is not None:
                extra.append(proxy)
            cine.browser.RemoveSynchronizedSequenceNode(node.GetID())
        elif node.IsA("vtkMRMLPlotChartNode"):
            extra += [node.GetNthPlotSeriesNode(k)
                      for k in range(node.GetNumberOfPlotSeriesNodes())]
    for node in doomed + extra:
        if node is not None:
            _remove_with_dependents(scene, node)
    return len(doomed)


@dataclass
class OutputData:
    """A segment-track output folder read into memory: numpy arrays and plain Python only,
    no scene, so :func:`read_output_folder` may run in a worker thread. Labels ``(X, Y, Z,
    T)`` uint8 on the cine grid, super-resolved intensities ``(X, Y, Z*F, T)`` float32,
    volume curves ``{column: (T,)}``; ``subject`` the fitted ``subject.nimosef`` bytes.
    ``motion``: the ``from_ed`` field of every frame (:func:`read_motion_fields`) and
    ``strain`` the rows of ``strain.csv`` (:func:`strain.read_strain`), None when not read."""

    out_dir: Path
    res_factor_z: int
    summary: dict
    labels: np.ndarray
    labels_affine: np.ndarray
    rec: np.ndarray
    rec_affine: np.ndarray
    curves: dict
    motion: list | None
    subject: bytes | None
    strain: dict | None = None


def read_output_folder(out_dir: str | Path, res_factor_z: int, n_frames: int,
                       with_motion: bool = True) -> OutputData:
    """Read and check everything the scene needs from a segment-track output folder.

    Raises ``NimosefInputError`` naming the file for anything missing or inconsistent with a
    cine of ``n_frames`` frames. Touches no scene (safe in a worker thread)."""
    from nimosef_engine.core.errors import NimosefInputError

    out_dir = Path(out_dir)
    summary = read_summary(out_dir)
    seg_path = output_file(out_dir, "seg.nii.gz")
    labels, labels_affine = read_output_nifti(seg_path, 4, np.uint8)
    rec_path = output_file(out_dir, f"rec_z{int(res_factor_z)}.nii.gz")
    rec, rec_affine = read_output_nifti(rec_path, 4)
    for path, n in ((seg_path, labels.shape[3]), (rec_path, rec.shape[3])):
        if n != n_frames:
            raise NimosefInputError(path, f"{n} frames, the cine has {n_frames}")
    table_curves = curves.read_volume_curves(output_file(out_dir, "volumes.csv"))
    if len(table_curves["frame"]) != n_frames:
        raise NimosefInputError(out_dir / "volumes.csv",
                                f"{len(table_curves['frame'])} rows, the cine has {n_frames}")
    fields = strain = None
    if with_motion:
        fields = read_motion_fields(out_dir, n_frames, labels_affine)
        strain = strain_lib.read_strain(output_file(out_dir, strain_lib.STRAIN_FILE), n_frames)
    subject_path = out_dir / "subject.nimosef"
    subject = subject_path.read_bytes() if subject_path.is_file() else None
    return OutputData(out_dir, int(res_factor_z), summary, labels, labels_affine, rec,
                      rec_affine, table_curves, fields, subject, strain)


class ResultsImport:
    """Import a segment-track output folder for ``cine`` in small steps, so that the GUI
    never waits long: :meth:`read` (files -> memory; may run in a worker thread), then
    :meth:`steps`, a generator whose every ``next()`` does one bounded piece of scene work
    (one frame of one sequence, one sequence attached, the table and chart) and yields what
    it did. The scene changes only in the last steps, after every file was read and every
    frame built: a bad folder leaves it as it was. ``results`` is set at the end.

    ``with_motion=False`` skips the motion (transforms, arrows, strain tables and chart)."""

    def __init__(self, ctx, cine: CineNodes, out_dir: str | Path, res_factor_z: int,
                 name: str = "NIMOSEF", with_motion: bool = True, glyph_scale: float = 1.0):
        self.ctx, self.cine, self.out_dir = ctx, cine, Path(out_dir)
        self.res_factor_z, self.name = int(res_factor_z), name
        self.with_motion, self.glyph_scale = with_motion, glyph_scale
        self.data: OutputData | None = None
        self.results: NimosefResults | None = None

    def read(self) -> OutputData:
        self.data = read_output_folder(self.out_dir, self.res_factor_z, self.cine.n_frames,
                                       self.with_motion)
        return self.data

    def steps(self) -> Iterator[str]:
        if self.data is None:
            self.read()
            yield "read the output folder"
        data, cine, name = self.data, self.cine, self.name
        values = _index_values(cine)
        seg_seq = _detached_output_sequence(cine, f"{name} segmentation", "segmentation")
        seg_seq.SetAttribute(OUTPUT_DIR, str(self.out_dir))
        yield from _segmentation_frames(seg_seq, data.labels, data.labels_affine, values)
        sr_seq = _detached_output_sequence(cine, f"{name} super-resolved", "superres")
        sr_seq.SetAttribute(RES_FACTOR, str(self.res_factor_z))
        yield from _volume_frames(sr_seq, data.rec, data.rec_affine, values)
        built = {"segmentation": seg_seq, "superres": sr_seq}
        arrows = None
        if self.with_motion:
            mo_seq = _detached_output_sequence(cine, f"{name} motion", "motion")
            ed = motion_ed_frame(data.summary)
            mo_seq.SetAttribute(motion.ED_FRAME, str(ed))
            yield from _motion_frames(mo_seq, data.motion, values)
            built["motion"] = mo_seq
            arrows = myocardium_arrows(seg_seq.GetNthDataNode(ed), data.motion)
            yield "arrow anchors on the ED myocardium"
            gl_seq = _detached_output_sequence(cine, f"{name} displacement", "glyphs")
            yield from _glyph_frames(gl_seq, arrows, values, self.glyph_scale)
            built["glyphs"] = gl_seq
        remove_results(self.ctx, cine)
        yield "removed earlier results"
        proxies = {"segmentation": _attach(self.ctx, cine, seg_seq)}
        style_segmentation_display(proxies["segmentation"], show_3d=True)
        yield "segmentation shown"
        proxies["superres"] = _attach(self.ctx, cine, sr_seq)
        proxies["superres"].CreateDefaultDisplayNodes()
        yield "super-resolved sequence shown"
        strain_nodes = {}
        if self.with_motion:
            proxies["motion"] = _attach(self.ctx, cine, built["motion"])
            yield "motion transforms in the browser"
            proxies["glyphs"] = _attach(self.ctx, cine, built["glyphs"])
            _style_glyphs(self.ctx, proxies["glyphs"], arrows)
            yield "arrows shown"
            strain_nodes = _add_strain(self.ctx, cine, data.strain, data.curves, name)
            yield "strain tables and chart"
        table, chart = _add_curves(self.ctx, cine, data.curves, data.summary, name)
        cine.browser.SetSelectedItemNumber(cine.browser.GetSelectedItemNumber())
        self.results = NimosefResults(cine, built, proxies, table, chart, data.summary,
                                      self.out_dir, self.res_factor_z, subject=data.subject,
                                      **strain_nodes)
        yield "volume curves shown"

    def run(self, step_seconds: list[tuple[str, float]] | None = None) -> NimosefResults:
        """All steps, blocking; ``step_seconds`` collects (step, seconds) of each."""
        import time

        start = time.perf_counter()
        for what in self.steps():
            now = time.perf_counter()
            if step_seconds is not None:
                step_seconds.append((what, now - start))
            start = now
        return self.results


def import_results(ctx, cine: CineNodes, out_dir: str | Path, res_factor_z: int,
                   name: str = "NIMOSEF", with_motion: bool = True) -> NimosefResults:
    """Import a complete segment-track output folder for ``cine`` (earlier results replaced),
    blocking (:class:`ResultsImport` does it in steps)."""
    return ResultsImport(ctx, cine, out_dir, res_factor_z, name, with_motion).run()


def load_superres(out_dir: Path, res_factor_z: int) -> tuple[np.ndarray, np.ndarray, Path]:
    """``rec_zF.nii.gz``: ((X, Y, Z*F, T) float32 intensities, affine_ras, path)."""
    path = output_file(out_dir, f"rec_z{int(res_factor_z)}.nii.gz")
    rec, affine = read_output_nifti(path, 4)
    return rec, affine, path


def update_superres(ctx, results: NimosefResults, resample_dir: str | Path,
                    res_factor_z: int) -> None:
    """Replace the super-resolved frames with those of a ``nimosef resample`` folder."""
    rec, affine, path = load_superres(Path(resample_dir), res_factor_z)
    _check_frames(path, rec.shape[3], results.cine)
    sequence = results.sequences["superres"]
    set_sequence_frames(sequence, rec, affine)
    sequence.SetAttribute(RES_FACTOR, str(int(res_factor_z)))
    results.res_factor_z = int(res_factor_z)
    results.superres_dir = Path(resample_dir)
    ctx.sequences_logic.UpdateProxyNodesFromSequences(results.cine.browser)
    proxy = results.cine.browser.GetProxyNode(sequence)
    results.proxies["superres"] = proxy
    if not np.allclose(ijk_to_ras(proxy), affine, atol=1e-4):
        raise RuntimeError("the super-resolved proxy did not take the resampled geometry")


def show_superres_preview(results: NimosefResults, path: str | Path) -> None:
    """Show one re-sampled frame (``preview_zF.nii.gz``, 3D) in the super-resolved proxy, on
    its new grid, while the whole cine is still being sampled. The sequence is not touched:
    :func:`update_superres` replaces it, or a proxy update from the sequence undoes this."""
    frame, affine = read_output_nifti(Path(path), 3)
    proxy = results.cine.browser.GetProxyNode(results.sequences["superres"])
    set_volume_array(proxy, frame, affine)
