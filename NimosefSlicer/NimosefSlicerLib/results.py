"""Read a segment-track output folder (DESIGN.md) into the scene, synchronised to the cine.

Every output sequence takes the cine's index values and joins the cine's browser, so one
play button animates the cine, the segmentation, the super-resolved intensities and the
arrows. Result nodes carry the attribute ``NIMOSEF.role`` so that a re-run replaces them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import curves, glyphs
from .cine import CineNodes, ijk_to_ras, new_sequence, set_sequence_frames, set_volume_array
from .segments import new_segmentation_node, segment_specs, style_segmentation_display

ROLE = "NIMOSEF.role"
INPUT = "NIMOSEF.inputSequenceID"
OUTPUT_DIR = "NIMOSEF.outputDir"
RES_FACTOR = "NIMOSEF.resFactorZ"
SUMMARY = "NIMOSEF.summary"

SUMMARY_KEYS = ("LV_EDV_mL", "LV_ESV_mL", "LV_SV_mL", "LV_EF_pct", "RV_EDV_mL", "RV_ESV_mL",
                "RV_EF_pct", "MYO_mass_g", "ed_frame", "es_frame", "n_frames")


@dataclass
class NimosefResults:
    """Result nodes of one run. Sequences live in the cine's browser; ``proxies`` maps a role
    (``segmentation``, ``superres``, ``glyphs``) to the node the browser shows."""

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
    prior: str | None = None  # the prior the run was fitted with (None: the bundled one)

    @property
    def superres_source(self) -> Path:
        """Folder of the super-resolved volume the scene shows."""
        return self.superres_dir or self.output_dir


def output_file(out_dir: Path, name: str) -> Path:
    """A contract file of the output folder; ``NimosefInputError`` if it is missing."""
    from nimosef_engine.errors import NimosefInputError

    path = Path(out_dir) / name
    if not path.exists():
        raise NimosefInputError(path, "missing from the segment-track output folder")
    return path


def read_summary(out_dir: Path) -> dict:
    """``summary.json`` as a dict; checks the keys the panel shows."""
    from nimosef_engine.errors import NimosefInputError

    path = output_file(out_dir, "summary.json")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise NimosefInputError(path, f"not valid JSON ({exc})") from None
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise NimosefInputError(path, f"missing keys {missing}")
    return summary


def _tag(node, role: str, cine: CineNodes) -> None:
    node.SetAttribute(ROLE, role)
    node.SetAttribute(INPUT, cine.sequence.GetID())


def _index_values(cine: CineNodes) -> list[str]:
    return [cine.sequence.GetNthIndexValue(t) for t in range(cine.n_frames)]


def _check_frames(path: Path, n_frames: int, cine: CineNodes) -> None:
    from nimosef_engine.errors import NimosefInputError

    if n_frames != cine.n_frames:
        raise NimosefInputError(path, f"{n_frames} frames, the cine has {cine.n_frames}")


def _new_output_sequence(ctx, cine: CineNodes, name: str, role: str):
    sequence, _ = new_sequence(ctx.scene, name, cine.n_frames, None)
    sequence.SetIndexName(cine.sequence.GetIndexName())
    sequence.SetIndexUnit(cine.sequence.GetIndexUnit())
    sequence.SetIndexType(cine.sequence.GetIndexType())
    _tag(sequence, role, cine)
    return sequence


def _synchronise(ctx, cine: CineNodes, sequence):
    cine.browser.AddSynchronizedSequenceNode(sequence)
    ctx.sequences_logic.UpdateProxyNodesFromSequences(cine.browser)
    proxy = cine.browser.GetProxyNode(sequence)
    proxy.SetName(sequence.GetName())
    _tag(proxy, sequence.GetAttribute(ROLE), cine)
    return proxy


def add_segmentation_sequence(ctx, cine: CineNodes, labels_xyzt: np.ndarray,
                              affine_ras: np.ndarray, name: str):
    """A segmentation sequence from ``(X, Y, Z, T)`` NIMOSEF labels, synchronised to the cine
    (closed surfaces computed per frame, 3D display on). Returns (sequence, proxy)."""
    sequence = _new_output_sequence(ctx, cine, name, "segmentation")
    for t, value in enumerate(_index_values(cine)):
        node = new_segmentation_node(labels_xyzt[..., t], affine_ras, f"{name}_{t:02d}")
        sequence.SetDataNodeAtValue(node, value)
    proxy = _synchronise(ctx, cine, sequence)
    style_segmentation_display(proxy, show_3d=True)
    return sequence, proxy


def import_segmentation(ctx, cine: CineNodes, out_dir: Path, name: str):
    """``seg.nii.gz`` (X, Y, Z, T) -> a segmentation sequence (closed surfaces on)."""
    from nimosef_engine.io.nifti import load_nifti

    path = output_file(out_dir, "seg.nii.gz")
    labels, affine = load_nifti(path, ndim=4, dtype=np.uint8)
    _check_frames(path, labels.shape[3], cine)
    return add_segmentation_sequence(ctx, cine, labels, affine, name)


def load_superres(out_dir: Path, res_factor_z: int) -> tuple[np.ndarray, np.ndarray, Path]:
    """``rec_zF.nii.gz``: ((X, Y, Z*F, T) float32 intensities, affine_ras, path)."""
    from nimosef_engine.io.nifti import load_nifti

    path = output_file(out_dir, f"rec_z{int(res_factor_z)}.nii.gz")
    rec, affine = load_nifti(path, ndim=4)
    return rec, affine, path


def import_superres(ctx, cine: CineNodes, out_dir: Path, res_factor_z: int, name: str):
    """``rec_zF.nii.gz`` -> a volume sequence on the z-super-resolved grid."""
    rec, affine, path = load_superres(out_dir, res_factor_z)
    _check_frames(path, rec.shape[3], cine)
    sequence = _new_output_sequence(ctx, cine, name, "superres")
    sequence.SetAttribute(RES_FACTOR, str(int(res_factor_z)))
    set_sequence_frames(sequence, rec, affine, _index_values(cine))
    proxy = _synchronise(ctx, cine, sequence)
    proxy.CreateDefaultDisplayNodes()
    return sequence, proxy


def read_motion(out_dir: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``motion.parquet`` -> ``{frame: (points (N, 3) RAS mm, displacement (N, 3) mm)}``."""
    import pyarrow.parquet as pq

    from nimosef_engine.errors import NimosefInputError

    path = output_file(out_dir, "motion.parquet")
    table = pq.read_table(path)
    needed = ["frame", "x", "y", "z", "ux", "uy", "uz"]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise NimosefInputError(path, f"missing columns {missing}")
    cols = {c: table.column(c).to_numpy() for c in needed}
    points = np.stack([cols["x"], cols["y"], cols["z"]], 1).astype(np.float64)
    vectors = np.stack([cols["ux"], cols["uy"], cols["uz"]], 1).astype(np.float64)
    frames = cols["frame"].astype(np.int64)
    return {int(f): (points[frames == f], vectors[frames == f]) for f in np.unique(frames)}


def add_glyph_sequence(ctx, cine: CineNodes,
                       motion: dict[int, tuple[np.ndarray, np.ndarray]], name: str,
                       scale: float = 1.0):
    """A model sequence of arrows, one model per frame from ``{frame: (points, vectors)}``
    (RAS mm), coloured by |displacement|, synchronised to the cine. Returns (sequence, proxy)."""
    import slicer

    sequence = _new_output_sequence(ctx, cine, name, "glyphs")
    for t, value in enumerate(_index_values(cine)):
        points, vectors = motion.get(t, (np.zeros((0, 3)), np.zeros((0, 3))))
        keep = glyphs.subsample_indices(len(points))
        model = slicer.vtkMRMLModelNode()
        model.SetName(f"{name}_{t:02d}")
        model.SetAndObservePolyData(glyphs.displacement_glyphs(points[keep], vectors[keep],
                                                               scale))
        sequence.SetDataNodeAtValue(model, value)
    proxy = _synchronise(ctx, cine, sequence)
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
    return sequence, proxy


def import_glyphs(ctx, cine: CineNodes, out_dir: Path, name: str, scale: float = 1.0):
    """``motion.parquet`` -> a model sequence of arrows (coloured by |displacement| mm)."""
    return add_glyph_sequence(ctx, cine, read_motion(out_dir), name, scale)


def _magnitude_color_node_id(scene) -> str:
    for node_id in ("vtkMRMLColorTableNodeFileViridis.txt", "vtkMRMLColorTableNodeRainbow"):
        if scene.GetNodeByID(node_id) is not None:
            return node_id
    return "vtkMRMLColorTableNodeRainbow"


def import_curves(ctx, cine: CineNodes, out_dir: Path, summary: dict, name: str):
    """``volumes.csv`` -> table + plot chart; the summary rides along as a table attribute."""
    table_curves = curves.read_volume_curves(output_file(out_dir, "volumes.csv"))
    table = curves.add_volume_table(ctx.scene, table_curves, f"{name} volumes")
    table.SetAttribute(SUMMARY, json.dumps(summary))
    _tag(table, "table", cine)
    colors = {f"{s.segment_id}_mL": s.color for s in segment_specs()}
    chart = curves.add_volume_chart(ctx.scene, table, colors, f"{name} volume curves")
    _tag(chart, "chart", cine)
    return table, chart


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


def import_results(ctx, cine: CineNodes, out_dir: str | Path, res_factor_z: int,
                   name: str = "NIMOSEF") -> NimosefResults:
    """Import a complete segment-track output folder for ``cine`` (earlier results replaced)."""
    out_dir = Path(out_dir)
    summary = read_summary(out_dir)
    remove_results(ctx, cine)
    seg_seq, seg_proxy = import_segmentation(ctx, cine, out_dir, f"{name} segmentation")
    seg_seq.SetAttribute(OUTPUT_DIR, str(out_dir))
    sr_seq, sr_proxy = import_superres(ctx, cine, out_dir, res_factor_z,
                                       f"{name} super-resolved")
    gl_seq, gl_proxy = import_glyphs(ctx, cine, out_dir, f"{name} displacement")
    table, chart = import_curves(ctx, cine, out_dir, summary, name)
    cine.browser.SetSelectedItemNumber(cine.browser.GetSelectedItemNumber())
    return NimosefResults(
        cine, {"segmentation": seg_seq, "superres": sr_seq, "glyphs": gl_seq},
        {"segmentation": seg_proxy, "superres": sr_proxy, "glyphs": gl_proxy},
        table, chart, summary, out_dir, int(res_factor_z))


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
    from nimosef_engine.io.nifti import load_nifti

    frame, affine = load_nifti(Path(path), ndim=3)
    proxy = results.cine.browser.GetProxyNode(results.sequences["superres"])
    set_volume_array(proxy, frame, affine)
