"""Myocardial strain of a segment-track output (``strain.csv``) as tables and a chart: the
global radial, circumferential and longitudinal strain against time, and the peak strain of
each AHA segment (the bullseye's numbers, as a table).

``strain.csv``: ``frame, time, segment, radial_pct, circumferential_pct, longitudinal_pct``,
one row per frame and segment (``1``-``16`` or ``global``): Lagrangian Green strain relative to
end-diastole, in percent (``nimosef_engine/motion/strain.py``). Plain ``csv`` and numpy: no
pandas (a bare Slicer lacks it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import curves

STRAIN_FILE = "strain.csv"
COMPONENTS = ("radial_pct", "circumferential_pct", "longitudinal_pct")
COLUMNS = ("frame", "time", "segment", *COMPONENTS)
SEGMENTS = (*[str(s) for s in range(1, 17)], "global")
COLORS = {"radial_pct": (0.85, 0.33, 0.10), "circumferential_pct": (0.0, 0.60, 0.30),
          "longitudinal_pct": (0.20, 0.40, 0.85)}
DECIMALS = {"time": 4, "time_ms": 1, **{c: 2 for c in COMPONENTS},
            **{f"peak_{c}": 2 for c in COMPONENTS}}
_WALLS6 = ("anterior", "anteroseptal", "inferoseptal", "inferior", "inferolateral",
           "anterolateral")
AHA_NAMES = {**{str(i + 1): f"basal {w}" for i, w in enumerate(_WALLS6)},
             **{str(i + 7): f"mid {w}" for i, w in enumerate(_WALLS6)},
             **{str(i + 13): f"apical {w}" for i, w in enumerate(
                 ("anterior", "septal", "inferior", "lateral"))},
             "global": "all 16 segments"}
"""AHA 17-segment model names (Cerqueira et al., Circulation 2002), apex cap 17 left out."""


def read_strain(path: str | Path, n_frames: int | None = None) -> dict:
    """``strain.csv`` -> ``{"frame": (R,) int, "time": (R,), "segment": [str] * R,
    component: (R,) %}``, one entry per row. Raises ``NimosefInputError`` naming the file
    for a missing column, a value that is not a number, an unknown segment, or (with
    ``n_frames``) a frame without its ``global`` row."""
    from nimosef_engine.core.errors import NimosefInputError

    path = Path(path)
    rows = curves.read_csv_rows(path, COLUMNS, "missing from the segment-track output folder")
    try:
        out = {"frame": np.array([int(r["frame"]) for r in rows]),
               "time": np.array([float(r["time"]) for r in rows]),
               "segment": [r["segment"] for r in rows],
               **{c: np.array([float(r[c]) if r[c] != "" else np.nan for r in rows])
                  for c in COMPONENTS}}
    except ValueError as exc:
        raise NimosefInputError(path, f"not a number: {exc}") from None
    unknown = sorted(set(out["segment"]) - set(SEGMENTS))
    if unknown:
        raise NimosefInputError(path, f"unknown segments {unknown}")
    if n_frames is not None:
        have = sorted(int(f) for f, s in zip(out["frame"], out["segment"], strict=True)
                      if s == "global")
        if have != list(range(n_frames)):
            raise NimosefInputError(path, f"global rows for frames {have}, the cine has "
                                          f"{n_frames} frames")
    return out


def global_curves(strain: dict) -> dict[str, np.ndarray]:
    """The ``global`` rows in frame order: ``{"frame", "time", component: (T,)}``."""
    rows = [i for i, s in enumerate(strain["segment"]) if s == "global"]
    rows.sort(key=lambda i: strain["frame"][i])
    return {k: np.asarray(strain[k])[rows] for k in ("frame", "time", *COMPONENTS)}


def peak_strain(strain: dict, column: str) -> dict[str, float]:
    """Peak of a component per segment over the frames: the value of largest magnitude
    (circumferential and longitudinal strain shorten, radial thickens), NaN where a segment
    has no value; keys in :data:`SEGMENTS` order (those present)."""
    values = np.asarray(strain[column], dtype=np.float64)
    segment = np.array(strain["segment"])
    out = {}
    for seg in SEGMENTS:
        v = values[(segment == seg) & np.isfinite(values)]
        if (segment == seg).any():
            out[seg] = float(v[np.argmax(np.abs(v))]) if v.size else float("nan")
    return out


def add_strain_table(scene, strain: dict, volume_curves: dict[str, np.ndarray], name: str):
    """Table node of the global strain per frame (``frame, time, time_ms`` from the volume
    curves, the three components in %)."""
    glob = global_curves(strain)
    frames = list(np.asarray(volume_curves["frame"]).round().astype(int))
    time_ms = np.array([volume_curves["time_ms"][frames.index(f)] for f in glob["frame"]])
    columns = {"frame": glob["frame"].astype(np.int64), "time": glob["time"],
               "time_ms": time_ms, **{c: glob[c] for c in COMPONENTS}}
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    curves.fill_table(table, columns, DECIMALS, {"time_ms": "ms", **{c: "%" for c in COMPONENTS}})
    return table


def add_strain_chart(scene, table_node, name: str):
    """Chart of the global radial, circumferential and longitudinal strain against time."""
    x_column, x_title = curves.time_axis(curves.table_columns(table_node))
    return curves.add_line_chart(scene, table_node, COLORS, x_column, name,
                                 "Global strain (relative to end-diastole)", x_title,
                                 "strain (%)")


def add_peak_table(scene, strain: dict, name: str):
    """Table node of the peak strain per AHA segment and globally (segment, name, peak
    radial / circumferential / longitudinal %): the numbers of the report's bullseye."""
    peaks = {c: peak_strain(strain, c) for c in COMPONENTS}
    segments = list(peaks[COMPONENTS[0]])
    columns = {"segment": segments, "name": [AHA_NAMES[s] for s in segments],
               **{f"peak_{c}": np.array([peaks[c][s] for s in segments]) for c in COMPONENTS}}
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    curves.fill_table(table, columns, DECIMALS, {f"peak_{c}": "%" for c in COMPONENTS})
    return table
