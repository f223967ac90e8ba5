"""``nimosef metrics``: score a folder of generated segmentations against their ground truth.

Input folder (written by ``nimosef generate``), per subject ``{id}``:
``{id}_seg.nii.gz`` (4D predicted NIMOSEF labels), ``{id}_seg_gt.nii.gz`` (4D ground truth on
the same grid) and ``{id}_frames.json`` (``frame_times``, ``frame_indices``,
``n_frames_cycle``, ``ed_index``, ``es_index``, ``cycle_ms``; ED/ES are positions along T).

Output folder (written atomically): ``{id}_metrics.csv``, ``{id}_indices.json``,
``volume_curves_{id}.png``, ``summary.csv`` and ``dice_boxplot.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from nimosef_engine.core.atomic import atomic_path, check_output_path
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.evaluation.metrics import CLASS_NAMES, indices_from_metrics, subject_metrics
from nimosef_engine.evaluation.plots import plot_dice_boxplot, plot_volume_curves
from nimosef_engine.io.nifti import load_nifti

log = logging.getLogger(__name__)

GT_SUFFIX = "_seg_gt.nii.gz"
INDEX_KEYS = ["LV_EDV_mL", "LV_ESV_mL", "LV_SV_mL", "LV_EF_pct", "RV_EDV_mL", "RV_ESV_mL",
              "RV_SV_mL", "RV_EF_pct", "MYO_mass_g", "LV_max_dVdt_mL_per_cycle",
              "LV_max_dVdt_mL_per_s"]
SUMMARY_INDEX_KEYS = ["LV_EDV_mL", "LV_ESV_mL", "LV_EF_pct", "RV_EDV_mL", "RV_ESV_mL",
                      "RV_EF_pct", "MYO_mass_g"]


def discover_subjects(pred_dir: Path) -> list[str]:
    """Subject ids of every ``{id}_seg_gt.nii.gz`` in ``pred_dir``, sorted."""
    return sorted(p.name[: -len(GT_SUFFIX)] for p in pred_dir.glob(f"*{GT_SUFFIX}"))


def _load_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y, Z, T)`` uint8 label map and its affine; rejects non-integer or unknown labels."""
    data, affine = load_nifti(path, ndim=(3, 4))
    if data.ndim == 3:
        data = data[..., None]
    if not np.all(data == np.round(data)):
        raise NimosefInputError(path, "label map holds non-integer values")
    values = np.unique(data)
    bad = [int(v) for v in values.tolist() if int(v) not in (0, *CLASS_NAMES)]
    if bad:
        raise NimosefInputError(path, f"unexpected label values {bad[:5]}; expected 0..3 "
                                      "(NIMOSEF: 1 LV, 2 MYO, 3 RV)")
    return data.astype(np.uint8), affine


def _load_frames(path: Path, n_frames: int) -> dict:
    """Validated ``{id}_frames.json`` for a volume with ``n_frames`` frames."""
    if not path.is_file():
        raise NimosefInputError(path, "file not found")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NimosefInputError(path, f"not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(info, dict) or "frame_times" not in info:
        raise NimosefInputError(path, "missing key 'frame_times'")
    try:
        times = [float(t) for t in info["frame_times"]]
        indices = [int(i) for i in info.get("frame_indices") or range(len(times))]
        cycle_ms = None if info.get("cycle_ms") is None else float(info["cycle_ms"])
        ed = None if info.get("ed_index") is None else int(info["ed_index"])
        es = None if info.get("es_index") is None else int(info["es_index"])
    except (TypeError, ValueError) as exc:
        raise NimosefInputError(path, f"malformed value ({exc})") from None
    if len(times) != n_frames or len(indices) != n_frames:
        raise NimosefInputError(path, f"{len(times)} frame_times / {len(indices)} frame_indices "
                                      f"for a segmentation with {n_frames} frames")
    if not all(0.0 <= t <= 1.0 for t in times):
        raise NimosefInputError(path, "frame_times must be cycle fractions in [0, 1]")
    for key, val in (("ed_index", ed), ("es_index", es)):
        if val is not None and not 0 <= val < n_frames:
            raise NimosefInputError(path, f"{key}={val} outside 0..{n_frames - 1}")
    return {"frame_times": times, "frame_indices": indices, "cycle_ms": cycle_ms,
            "ed_index": ed, "es_index": es}


def load_subject(pred_dir: Path, subject: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """``(pred (X,Y,Z,T), gt (X,Y,Z,T), affine_ras, frames)`` of one subject, validated."""
    pred_path = pred_dir / f"{subject}_seg.nii.gz"
    gt_path = pred_dir / f"{subject}{GT_SUFFIX}"
    gt, affine = _load_labels(gt_path)
    pred, pred_affine = _load_labels(pred_path)
    if pred.shape != gt.shape:
        raise NimosefInputError(pred_path, f"grid {pred.shape} differs from the ground truth "
                                           f"{gt_path.name} {gt.shape}")
    if not np.allclose(pred_affine, affine, atol=1e-3):
        raise NimosefInputError(pred_path, f"affine differs from the ground truth {gt_path.name}")
    frames = _load_frames(pred_dir / f"{subject}_frames.json", gt.shape[3])
    return pred, gt, affine, frames


def _clean(value):
    """JSON-safe scalar: NaN/inf -> None, numpy -> Python."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate_subject(pred_dir: Path, subject: str, out_dir: Path) -> dict:
    """Write one subject's metrics CSV, indices JSON and volume plot; return its summary row."""
    pred, gt, affine, frames = load_subject(pred_dir, subject)
    table = subject_metrics(pred, gt, affine, frames["frame_times"], frames["frame_indices"])
    table.to_csv(out_dir / f"{subject}_metrics.csv", index=False)
    kw = {"ed_index": frames["ed_index"], "es_index": frames["es_index"],
          "cycle_ms": frames["cycle_ms"]}
    ind = {src: indices_from_metrics(table, src, **kw) for src in ("pred", "gt")}
    error = {k: ind["pred"][k] - ind["gt"][k] for k in INDEX_KEYS}
    payload = {"subject": subject, "error_definition": "pred - gt",
               **{src: {k: _clean(v) for k, v in ind[src].items()} for src in ind},
               "error": {k: _clean(v) for k, v in error.items()}}
    (out_dir / f"{subject}_indices.json").write_text(json.dumps(payload, indent=2) + "\n",
                                                     encoding="utf-8")
    plot_volume_curves(table, out_dir / f"volume_curves_{subject}.png", title=subject)
    means = table.groupby("class", sort=False)[["dice", "hd95"]].mean()
    row: dict = {"subject": subject}
    for name in CLASS_NAMES.values():
        row[f"dice_{name}"] = means.loc[name, "dice"]
    for name in CLASS_NAMES.values():
        row[f"hd95_{name}_mm"] = means.loc[name, "hd95"]
    for k in SUMMARY_INDEX_KEYS:
        row[f"{k}_pred"] = ind["pred"][k]
        row[f"{k}_gt"] = ind["gt"][k]
    row["LV_EF_err_pct"] = error["LV_EF_pct"]
    row["RV_EF_err_pct"] = error["RV_EF_pct"]
    row["MYO_mass_err_g"] = error["MYO_mass_g"]
    return row


def evaluate_pred_dir(pred_dir: str | Path, out_dir: str | Path | None = None,
                      subjects: Sequence[str] | None = None) -> pd.DataFrame:
    """Score every subject of ``pred_dir``; write the output folder atomically.

    ``out_dir`` defaults to ``pred_dir/metrics``; ``subjects`` default to those with a
    ``{id}_seg_gt.nii.gz``. Returns the summary table (one row per subject).
    """
    pred_dir = Path(pred_dir)
    if pred_dir.exists() and not pred_dir.is_dir():
        raise NimosefInputError(pred_dir, "is a file, expected the folder of generated "
                                          "segmentations")
    if not pred_dir.is_dir():
        raise NimosefInputError(pred_dir, "prediction folder not found")
    subjects = list(subjects) if subjects else discover_subjects(pred_dir)
    if not subjects:
        raise NimosefInputError(pred_dir, f"no *{GT_SUFFIX} file: nothing to evaluate")
    out_dir = check_output_path(out_dir if out_dir is not None else pred_dir / "metrics")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        rows = []
        for i, subject in enumerate(subjects):
            log.info("metrics %d/%d: %s", i + 1, len(subjects), subject)
            rows.append(evaluate_subject(pred_dir, subject, tmp))
        summary = pd.DataFrame(rows)
        summary.to_csv(tmp / "summary.csv", index=False)
        plot_dice_boxplot(summary, tmp / "dice_boxplot.png")
    log.info("wrote %s", out_dir)
    return summary


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "metrics", help="Dice, HD95, Hausdorff, Chamfer, volumes and EF of generated "
                        "segmentations against their ground truth",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred-dir", required=True, type=Path,
                   help="folder with {id}_seg.nii.gz, {id}_seg_gt.nii.gz, {id}_frames.json")
    p.add_argument("--subjects", nargs="+", default=None, metavar="ID",
                   help="subject ids (default: every {id}_seg_gt.nii.gz in --pred-dir)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: PRED_DIR/metrics)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = evaluate_pred_dir(args.pred_dir, args.out, args.subjects)
    cols = [c for c in summary.columns if c.startswith("dice_")]
    print(summary[["subject", *cols]].to_string(index=False, float_format="%.3f"))
    return 0
