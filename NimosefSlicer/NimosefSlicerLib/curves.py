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


def read_csv_rows(path: Path, columns, absent: str) -> list[dict[str, str]]:
    """The rows of a CSV table of the engine's output as dicts; raises ``NimosefInputError``
    naming ``path`` when it is missing (``absent``: the problem to state), lacks one of
    ``columns`` or has no rows."""
    from nimosef_engine.core.errors import NimosefInputError

    if not path.is_file():
        raise NimosefInputError(path, absent)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise NimosefInputError(path, f"missing columns {missing}")
        rows = list(reader)
    if not rows:
        raise NimosefInputError(path, "no rows")
    return rows


def read_volume_curves(path: str | Path) -> dict[str, np.ndarray]:
    """``volumes.csv`` of a segment-track output -> ``{column: (T,) array}``.

    ``time_ms`` is NaN where the input had no trigger times. Raises ``NimosefInputError`` when a
    contract column is missing or a value is not a number.
    """
    from nimosef_engine.core.errors import NimosefInputError

    path = Path(path)
    rows = read_csv_rows(path, CURVE_COLUMNS, "file not found")
    optional = {"time_ms"}  # empty when the input carries no trigger times
    try:
        return {c: np.array([float(r[c]) if r[c] != "" or c not in optional else np.nan
                             for r in rows]) for c in CURVE_COLUMNS}
    except ValueError as exc:
        raise NimosefInputError(path, f"not a number: {exc}") from None


def fill_table(table_node, columns: dict[str, np.ndarray | list],
               decimals: dict[str, int] | None = None, units: dict[str, str] | None = None
               ) -> None:
    """Replace the table's columns with ``columns`` (in their order): an integer array gives
    an int column, a list of str a string column, anything else a double column rounded to
    ``decimals[name]`` when given; ``units`` sets column unit labels."""
    import vtk

    decimals, units = decimals or {}, units or {}
    table = vtk.vtkTable()
    for name, values in columns.items():
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            column = vtk.vtkStringArray()
            for v in values:
                column.InsertNextValue(v)
        elif np.issubdtype(np.asarray(values).dtype, np.integer):
            column = vtk.vtkIntArray()
            for v in np.asarray(values):
                column.InsertNextValue(int(v))
        else:
            column = vtk.vtkDoubleArray()
            values = np.asarray(values, dtype=np.float64)
            if name in decimals:
                values = np.round(values, decimals[name])
            for v in values:
                column.InsertNextValue(float(v))
        column.SetName(name)
        table.AddColumn(column)
    table_node.SetAndObserveTable(table)
    for name, unit in units.items():
        table_node.SetColumnUnitLabel(name, unit)
    table_node.Modified()


def fill_volume_table(table_node, curves: dict[str, np.ndarray]) -> None:
    """Replace the table's columns with ``curves`` (frame as int, the others as double,
    rounded to :data:`DECIMALS`)."""
    columns = {name: (np.asarray(curves[name]).round().astype(np.int64) if name == "frame"
                      else np.asarray(curves[name])) for name in CURVE_COLUMNS}
    units = {name: ("mL" if name.endswith("_mL") else "ms") for name in CURVE_COLUMNS
             if name.endswith("_mL") or name == "time_ms"}
    fill_table(table_node, columns, DECIMALS, units)


def add_volume_table(scene, curves: dict[str, np.ndarray], name: str):
    """A table node of the volume curves, added to ``scene``."""
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    fill_volume_table(table_node, curves)
    return table_node


def time_axis(curves: dict[str, np.ndarray]) -> tuple[str, str]:
    """(column, axis title) of the time axis of a chart: ``time_ms`` when every frame has a
    trigger time, else ``time`` (fraction of the cycle)."""
    if np.all(np.isfinite(np.asarray(curves.get("time_ms", [np.nan]), dtype=np.float64))):
        return "time_ms", "time (ms)"
    return "time", "time (fraction of the cycle)"


def add_line_chart(scene, table_node, columns: dict[str, tuple[float, float, float]],
                   x_column: str, name: str, title: str, x_title: str, y_title: str):
    """A plot chart of ``table_node`` with one series per ``columns`` entry (its colour)
    against ``x_column``."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(title)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    for column, color in columns.items():
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName(x_column)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        series.SetColor(*color)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def add_volume_chart(scene, table_node, colors: dict[str, tuple[float, float, float]],
                     name: str):
    """A plot chart with one line per chamber (volume in mL against time in ms, or in
    fractions of the cycle where the cine has no trigger times)."""
    x_column, x_title = time_axis(table_columns(table_node))
    return add_line_chart(scene, table_node,
                          {c: colors.get(c, (0.2, 0.2, 0.2)) for c in PLOTTED}, x_column,
                          name, "Volume curves", x_title, "volume (mL)")


def table_columns(table_node) -> dict[str, np.ndarray | list[str]]:
    """The table node's columns as arrays (string columns as lists of str)."""
    table = table_node.GetTable()
    out: dict[str, np.ndarray | list[str]] = {}
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        if column.IsA("vtkStringArray"):
            out[column.GetName()] = [column.GetValue(r) for r in range(table.GetNumberOfRows())]
            continue
        out[column.GetName()] = np.array([column.GetVariantValue(r).ToDouble()
                                          for r in range(table.GetNumberOfRows())])
    return out


def export_table_csv(table_node, path: str | Path) -> Path:
    """Write the table to ``path`` as CSV with Slicer's table storage node (atomic)."""
    from nimosef_engine.core.atomic import atomic_path

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
