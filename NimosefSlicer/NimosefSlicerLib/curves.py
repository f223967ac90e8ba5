"""Volume curves (mL per frame) as a table node, a plot chart, and CSV export."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import slicer

CURVE_COLUMNS = ("frame", "time", "time_ms", "LV_mL", "MYO_mL", "RV_mL")
PLOTTED = ("LV_mL", "MYO_mL", "RV_mL")
DECIMALS = {"frame": 0, "time": 4, "time_ms": 1, "LV_mL": 2, "MYO_mL": 2, "RV_mL": 2}
"""Table precision: Slicer's table storage keeps 6 significant digits, so values are rounded
to what survives saving (0.01 mL, 0.1 ms) and the scene shows what a saved scene holds."""


def read_volume_curves(path: str | Path) -> dict[str, np.ndarray]:
    """``volumes.csv`` of a segment-track output -> ``{column: (T,) array}``.

    ``time_ms`` is NaN where the input had no trigger times. Raises ``NimosefInputError`` when a
    contract column is missing or a value is not a number.
    """
    from nimosef_engine.errors import NimosefInputError

    path = Path(path)
    if not path.is_file():
        raise NimosefInputError(path, "file not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CURVE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise NimosefInputError(path, f"missing columns {missing}")
        rows = list(reader)
    if not rows:
        raise NimosefInputError(path, "no rows")
    optional = {"time_ms"}  # empty when the input carries no trigger times
    try:
        return {c: np.array([float(r[c]) if r[c] != "" or c not in optional else np.nan
                             for r in rows]) for c in CURVE_COLUMNS}
    except ValueError as exc:
        raise NimosefInputError(path, f"not a number: {exc}") from None


def fill_volume_table(table_node, curves: dict[str, np.ndarray]) -> None:
    """Replace the table's columns with ``curves`` (frame as int, the others as double,
    rounded to :data:`DECIMALS`)."""
    import vtk

    table = vtk.vtkTable()
    for name in CURVE_COLUMNS:
        values = np.asarray(curves[name])
        column = vtk.vtkIntArray() if name == "frame" else vtk.vtkDoubleArray()
        column.SetName(name)
        for v in np.round(values.astype(np.float64), DECIMALS[name]):
            column.InsertNextValue(int(v) if name == "frame" else float(v))
        table.AddColumn(column)
    table_node.SetAndObserveTable(table)
    for name in CURVE_COLUMNS:
        unit = "mL" if name.endswith("_mL") else ("ms" if name == "time_ms" else "")
        if unit:
            table_node.SetColumnUnitLabel(name, unit)
    table_node.Modified()


def add_volume_table(scene, curves: dict[str, np.ndarray], name: str):
    """A table node of the volume curves, added to ``scene``."""
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    fill_volume_table(table_node, curves)
    return table_node


def add_volume_chart(scene, table_node, colors: dict[str, tuple[float, float, float]],
                     name: str):
    """A plot chart with one line per chamber (volume in mL against time in ms)."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle("Volume curves")
    chart.SetXAxisTitle("time (ms)")
    chart.SetYAxisTitle("volume (mL)")
    for column in PLOTTED:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName("time_ms")
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        series.SetColor(*colors.get(column, (0.2, 0.2, 0.2)))
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def table_columns(table_node) -> dict[str, np.ndarray]:
    """The table node's columns as arrays."""
    table = table_node.GetTable()
    out = {}
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        out[column.GetName()] = np.array([column.GetVariantValue(r).ToDouble()
                                          for r in range(table.GetNumberOfRows())])
    return out


def export_table_csv(table_node, path: str | Path) -> Path:
    """Write the table to ``path`` as CSV with Slicer's table storage node (atomic)."""
    from nimosef_engine.atomic import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path.with_name(path.name + ".csv")
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(dir=path.parent) as work:
        written = Path(work) / path.name  # the storage node picks CSV from the extension
        storage = slicer.vtkMRMLTableStorageNode()
        storage.SetFileName(str(written))
        if not storage.WriteData(table_node) or not written.is_file():
            raise OSError(f"cannot write {path}")
        os.replace(written, tmp)
    return path
