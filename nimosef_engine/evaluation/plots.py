"""Figures for the metrics: volume curves over the cycle and per-class Dice box plots.

Figures are drawn with matplotlib's Agg canvas (no pyplot state, no display needed) and
written atomically as PNG.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nimosef_engine.core.atomic import atomic_path

CLASSES = ("LV", "MYO", "RV")
COLOURS = {"LV": "#d62728", "MYO": "#2ca02c", "RV": "#1f77b4"}

Curves = Mapping[str, Sequence[float]]


def _save_png(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _curves_from_table(df: pd.DataFrame) -> tuple[np.ndarray, Curves, Curves | None]:
    """``(times, pred, gt)`` from a long :func:`metrics.subject_metrics` table (``class``,
    ``time``, ``vol_pred_mL``[, ``vol_gt_mL``]) or a wide one (``time``, ``LV_mL``, ...)."""
    if "class" in df.columns:
        times = df.loc[df["class"] == CLASSES[0], "time"].to_numpy(dtype=np.float64)
        pred = {c: df.loc[df["class"] == c, "vol_pred_mL"].to_numpy() for c in CLASSES}
        gt = None
        if "vol_gt_mL" in df.columns and df["vol_gt_mL"].notna().any():
            gt = {c: df.loc[df["class"] == c, "vol_gt_mL"].to_numpy() for c in CLASSES}
        return times, pred, gt
    missing = [f"{c}_mL" for c in CLASSES if f"{c}_mL" not in df.columns] + (
        [] if "time" in df.columns else ["time"])
    if missing:
        raise ValueError(f"volume table lacks columns {missing}")
    return (df["time"].to_numpy(dtype=np.float64),
            {c: df[f"{c}_mL"].to_numpy() for c in CLASSES}, None)


def plot_volume_curves(volumes: pd.DataFrame | Curves, path: str | Path,
                       times: Sequence[float] | None = None, gt: Curves | None = None,
                       title: str | None = None) -> Path:
    """Plot LV / MYO / RV volume (mL) against cycle time (fraction of the cycle, ED = 0).

    ``volumes``: a :func:`evaluation.metrics.subject_metrics` table (its ground truth is
    drawn when present), a wide table with ``time, LV_mL, MYO_mL, RV_mL``, or a mapping
    ``{"LV": (T,), ...}`` with ``times`` (T,) (default ``t / T``) and optional ``gt`` curves.
    Prediction solid, ground truth dashed. Writes a PNG atomically and returns its path.
    """
    if isinstance(volumes, pd.DataFrame):
        t, pred, table_gt = _curves_from_table(volumes)
        gt = gt if gt is not None else table_gt
    else:
        pred = volumes
        n = len(next(iter(pred.values())))
        t = np.arange(n) / n if times is None else np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    for c in CLASSES:
        if c not in pred:
            continue
        ax.plot(t[order], np.asarray(pred[c])[order], "-o", ms=3, color=COLOURS[c],
                label=f"{c} pred" if gt is not None else c)
        if gt is not None and c in gt:
            ax.plot(t[order], np.asarray(gt[c])[order], "--", color=COLOURS[c], label=f"{c} gt")
    ax.set_xlabel("cycle time (fraction of the cycle, ED = 0)")
    ax.set_ylabel("volume (mL)")
    ax.set_xlim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if gt is not None else 1)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save_png(fig, path)


def plot_dice_boxplot(summary_df: pd.DataFrame, path: str | Path,
                      title: str | None = None) -> Path:
    """Box plot of per-subject mean Dice per class (columns ``dice_LV, dice_MYO, dice_RV``).

    NaN values (class absent) are left out. Writes a PNG atomically and returns its path.
    """
    cols = [f"dice_{c}" for c in CLASSES if f"dice_{c}" in summary_df.columns]
    if not cols:
        raise ValueError("summary table has no dice_LV / dice_MYO / dice_RV column")
    data = [summary_df[c].dropna().to_numpy(dtype=np.float64) for c in cols]
    fig = Figure(figsize=(4.5, 4.0))
    ax = fig.add_subplot()
    box = ax.boxplot(data, patch_artist=True, showmeans=True)
    ax.set_xticks(range(1, len(cols) + 1), [c.removeprefix("dice_") for c in cols])
    for patch, c in zip(box["boxes"], cols, strict=True):
        patch.set_facecolor(COLOURS[c.removeprefix("dice_")])
        patch.set_alpha(0.5)
    ax.set_ylabel("Dice")
    ax.set_ylim(0.0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    n = len(summary_df)
    ax.set_title(title or f"Dice per class ({n} subject{'' if n == 1 else 's'})")
    fig.tight_layout()
    return _save_png(fig, path)


def draw_bullseye(ax, values: Mapping[int, float], title: str = "",
                  label: str = "%", cmap: str = "RdBu_r", limit: float | None = None) -> None:
    """The AHA bullseye (segments 1-16: basal outer ring, apical inner; anterior at the top,
    septum on the left) on ``ax``, each segment coloured by ``values[segment]`` and labelled
    with its number and value; a colour scale symmetric about zero (``limit``: its end)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Wedge

    finite = [abs(v) for v in values.values() if np.isfinite(v)]
    limit = limit or (max(finite) if finite else 1.0) or 1.0
    norm = Normalize(-limit, limit)
    cm = colormaps[cmap]
    rings = ((range(1, 7), 1.0, 60.0), (range(7, 13), 0.7, 60.0), (range(13, 17), 0.4, 90.0))
    for segs, outer, width in rings:
        for i, seg in enumerate(segs):
            # segment 1 (anterior) centred at the top, then anticlockwise: septum on the left
            centre = 90.0 + i * width
            v = values.get(seg, np.nan)
            colour = cm(norm(v)) if np.isfinite(v) else (0.85, 0.85, 0.85, 1.0)
            ax.add_patch(Wedge((0, 0), outer, centre - width / 2, centre + width / 2,
                               width=0.3, facecolor=colour, edgecolor="white", lw=1.5))
            r = outer - 0.15
            th = np.radians(centre)
            text = f"{seg}\n{v:.0f}" if np.isfinite(v) else str(seg)
            ax.text(r * np.cos(th), r * np.sin(th), text, ha="center", va="center",
                    fontsize=6.5)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_axis_off()
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=norm, cmap=cm)
    ax.figure.colorbar(sm, ax=ax, fraction=0.046, pad=0.02, label=label)
    if title:
        ax.set_title(title, fontsize=9)


def plot_report(cine, seg: np.ndarray, subject, volumes: pd.DataFrame, indices: Mapping,
                path: str | Path, strain: pd.DataFrame | None = None,
                quality: Mapping | None = None) -> Path:
    """Segment & Track report: ED and ES mid-slices with contours, the volume curves and,
    with ``strain`` (the ``strain.csv`` table, :mod:`nimosef_engine.motion.strain`), a
    bullseye of the peak circumferential strain per AHA segment.

    ``cine``: the input (``frames`` (T, X, Y, Z)); ``seg`` (T, x, y, z) labels on the
    subject's crop grid (``subject.crop_offset``); ``volumes``: the volumes table;
    ``indices``: :func:`nimosef_engine.evaluation.metrics.cardiac_indices` of it; ``quality``: the
    verdict (:mod:`nimosef_engine.pipeline.quality`), shown above the panels unless it is ``ok``.
    """
    ed, es = int(indices["ed_index"]), int(indices["es_index"])
    lv_slices = np.flatnonzero((seg[ed] == 1).any(axis=(0, 1)))
    k = int(np.median(lv_slices)) if len(lv_slices) else seg.shape[3] // 2
    ox, oy, oz = subject.crop_offset
    sx, sy = seg.shape[1], seg.shape[2]
    n_panels = 3 if strain is None or strain.empty else 4
    fig = Figure(figsize=(3.7 * n_panels, 4.0))
    for i, (f, name) in enumerate(((ed, "ED"), (es, "ES"))):
        ax = fig.add_subplot(1, n_panels, i + 1)
        img = cine.frames[f, ox:ox + sx, oy:oy + sy, oz + k]
        ax.imshow(img.T, cmap="gray", origin="lower")
        for c, cname in ((1, "LV"), (2, "MYO"), (3, "RV")):
            mask = (seg[f, :, :, k] == c).T.astype(float)
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=[COLOURS[cname]], linewidths=1.2)
        ax.set_title(f"{name} (frame {f}), slice {oz + k}")
        ax.set_axis_off()
    ax = fig.add_subplot(1, n_panels, 3)
    t = volumes["time"].to_numpy(dtype=np.float64)
    order = np.argsort(t, kind="stable")
    for c in CLASSES:
        ax.plot(t[order], volumes[f"{c}_mL"].to_numpy()[order], "-o", ms=3,
                color=COLOURS[c], label=c)
    ax.set_xlabel("cycle time (fraction)")
    ax.set_ylabel("volume (mL)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ef = indices.get("LV_EF_pct", float("nan"))
    ax.set_title(f"LV EF {ef:.1f} %, EDV {indices.get('LV_EDV_mL', float('nan')):.0f} mL")
    if n_panels == 4:
        from nimosef_engine.motion.strain import peak_strain

        peak = peak_strain(strain)
        glob = peak.get("global", float("nan"))
        draw_bullseye(fig.add_subplot(1, 4, 4),
                      {int(k): float(v) for k, v in peak.items() if k != "global"},
                      f"peak circumferential strain (%)\nglobal {glob:.1f} %", label="%")
    title = "NIMOSEF Segment & Track (research software, not a medical device)"
    if quality and quality.get("verdict") != "ok":
        reasons = "; ".join(quality.get("reasons", []))
        title += f"\nQUALITY {str(quality['verdict']).upper()}: {textwrap.shorten(reasons, 160)}"
    fig.suptitle(title, fontsize=9, color="black" if title.count("\n") == 0 else "firebrick")
    fig.tight_layout()
    return _save_png(fig, path)
