"""Scoring Segment & Track against labels it never saw: ACDC (ED/ES) and Sunnybrook contours."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from nimosef_engine.atomic import atomic_path, atomic_write_text
from nimosef_engine.data.acdc import parse_info_cfg, remap_acdc_labels
from nimosef_engine.errors import NimosefInputError
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.metrics import dice, volumes_ml
from nimosef_engine.progress import ProgressReporter
from nimosef_engine.segment_track import segment_track

log = logging.getLogger(__name__)


def _ef(edv: float, esv: float) -> float:
    return 100.0 * (edv - esv) / edv if edv > 0 else float("nan")


def evaluate_acdc_patient(folder: Path, work: Path, **options) -> dict:
    """Segment & Track the ED/ES pair of an ACDC patient (no labels), score it against them."""
    pid = folder.name
    info = parse_info_cfg(folder / "Info.cfg")
    frames = [folder / f"{pid}_frame{n:02d}.nii.gz" for n in (info.ed, info.es)]
    out = work / pid
    summary = segment_track(frames, out, frame_numbers=[info.ed, info.es],
                            n_frames=info.nb_frame, ed_frame=0, overwrite=True, **options)
    pred, aff = load_nifti(out / "seg.nii.gz", ndim=4, dtype=np.uint8)
    chosen = [i for i, h in enumerate(summary["fit"]["pose_hypotheses"]) if h["chosen"]]
    gts = [remap_acdc_labels(load_nifti(folder / f"{pid}_frame{n:02d}_gt.nii.gz", ndim=3,
                                        dtype=np.uint8)[0]) for n in (info.ed, info.es)]
    gt_paths = [folder / f"{pid}_frame{n:02d}_gt.nii.gz" for n in (info.ed, info.es)]
    return {"subject": pid, "runtime_s": summary["runtime_s"],
            "fit_loss": summary["fit"]["final_loss"], "pose_hypothesis": chosen[0],
            **score_ed_es([pred[..., 0], pred[..., 1]], gts, aff),
            **tracking_scores(ed_to_es_field(out, summary), *gt_paths),
            "peak_global_circumferential_strain_pct": peak_global_strain(out / "strain.csv"),
            "group": info.group}


def ed_to_es_field(out: Path, summary: dict) -> Path:
    """The field of a segment-track run on an ED/ES pair (input frames 0, 1) that maps ES
    points to their ED positions: ``to_ed_01`` when the run's ED is frame 0, else
    ``from_ed_00`` (its ED is then frame 1, and frame 0 is where ED's tissue goes)."""
    ed = int(summary["motion"]["ed_frame"])
    return out / "motion" / ("to_ed_01.nii.gz" if ed == 0 else "from_ed_00.nii.gz")


def tracking_scores(field: Path, ed_gt: Path, es_gt: Path) -> dict:
    """The expert ED labels carried to ES through ``field`` (an ITK displacement field from
    ES points to ED positions, applied as ``sitk.Resample`` with nearest neighbour) against the
    expert ES labels: Dice and HD95 (mm) per class, beside the identity baseline (the ED
    labels unmoved), and the share (%) of ES heart voxels where the field folds (Jacobian
    determinant <= 0)."""
    import SimpleITK as sitk

    from nimosef_engine.metrics import surface_distances

    ed_img, es_img = (sitk.ReadImage(str(p)) for p in (ed_gt, es_gt))
    disp = sitk.ReadImage(str(field), sitk.sitkVectorFloat64)
    det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(disp))
    warped = sitk.Resample(ed_img, es_img, sitk.DisplacementFieldTransform(disp),
                           sitk.sitkNearestNeighbor, 0, ed_img.GetPixelID())
    es, es_aff = load_nifti(es_gt, ndim=3, dtype=np.uint8)
    es = remap_acdc_labels(es)

    def labels_of(img):  # sitk (z, y, x) -> NIMOSEF labels (x, y, z)
        return remap_acdc_labels(sitk.GetArrayFromImage(img).transpose(2, 1, 0)
                                 .astype(np.uint8))

    row = {}
    for name, lab in (("track", labels_of(warped)), ("identity", labels_of(ed_img))):
        for c, cname in ((1, "LV"), (2, "MYO"), (3, "RV")):
            row[f"{name}_dice_{cname}"] = dice(lab, es, c)
            row[f"{name}_hd95_{cname}"] = surface_distances(lab == c, es == c, es_aff)["hd95"]
        row[f"{name}_dice_mean"] = float(np.nanmean([row[f"{name}_dice_{c}"]
                                                     for c in ("LV", "MYO", "RV")]))
    heart = es.transpose(2, 1, 0) > 0
    row["track_folding_pct"] = 100.0 * float((det[heart] <= 0).mean()) if heart.any() else 0.0
    return row


def peak_global_strain(strain_csv: Path) -> float:
    """Peak (largest magnitude) global circumferential strain (%) of a ``strain.csv``."""
    from nimosef_engine.motion.strain import peak_strain

    return float(peak_strain(pd.read_csv(strain_csv, dtype={"segment": str}))
                 .get("global", np.nan))


def score_ed_es(preds: list[np.ndarray], gts: list[np.ndarray], aff) -> dict:
    """Scores of an ED/ES pair of label maps ``preds`` against ``gts`` (same grid, affine
    ``aff``): Dice per class and frame, LV and RV EF predicted, true and |error|, and Dice per
    class averaged over the two frames."""
    row = {}
    vols = {}
    for p, gt, name in zip(preds, gts, ("ED", "ES"), strict=True):
        for c, cname in ((1, "LV"), (2, "MYO"), (3, "RV")):
            row[f"dice_{cname}_{name}"] = dice(p, gt, c)
        vols[name] = (volumes_ml(p, aff), volumes_ml(gt, aff))
    for c in ("LV", "RV"):
        ef_p = _ef(vols["ED"][0][c], vols["ES"][0][c])
        ef_g = _ef(vols["ED"][1][c], vols["ES"][1][c])
        row.update({f"{c}_EF_pred": ef_p, f"{c}_EF_gt": ef_g, f"{c}_EF_abs_err": abs(ef_p - ef_g)})
    for cname in ("LV", "MYO", "RV"):
        row[f"dice_{cname}"] = float(np.nanmean([row[f"dice_{cname}_ED"],
                                                 row[f"dice_{cname}_ES"]]))
    return row


def evaluate_sunnybrook(dicom_dir: Path, contour_dir: Path, work: Path, **options) -> dict:
    """Segment & Track the Sunnybrook cine; LV endocardial Dice against the manual i-contours."""
    from nimosef_engine.io.contours import contour_mask, load_sunnybrook_contours
    from nimosef_engine.io.dicom import scan_dicom_cine

    out = work / "sunnybrook"
    summary = segment_track([dicom_dir], out, overwrite=True, **options)
    pred, _ = load_nifti(out / "seg.nii.gz", ndim=4, dtype=np.uint8)
    layout = scan_dicom_cine(dicom_dir)
    contours = load_sunnybrook_contours(contour_dir)
    if not contours:
        raise NimosefInputError(contour_dir, "no i-contour files found")
    rows = []
    for number, pts in sorted(contours.items()):
        k, t = layout.index_of(dicom_dir / f"{number}.dcm")
        gt = contour_mask(pts, (pred.shape[1], pred.shape[0])).T
        rows.append({"file": number, "slice": k, "frame": t,
                     "dice_LV_endo": dice(pred[:, :, k, t] == 1, gt, True)})
    df = pd.DataFrame(rows)
    return {"per_contour": df, "mean_dice_LV_endo": float(df["dice_LV_endo"].mean()),
            "runtime_s": summary["runtime_s"]}


def summarise(df: pd.DataFrame) -> dict:
    """Mean Dice per class, median |EF error| for LV and RV."""
    out = {"n_subjects": int(len(df))}
    for c in ("LV", "MYO", "RV"):
        out[f"mean_dice_{c}"] = round(float(df[f"dice_{c}"].mean()), 4)
    for c in ("LV", "RV"):
        out[f"median_abs_{c}_EF_err"] = round(float(df[f"{c}_EF_abs_err"].median()), 2)
    if "track_dice_mean" in df.columns:
        for name in ("track", "identity"):
            for c in ("LV", "MYO", "RV", "mean"):
                out[f"mean_{name}_dice_{c}"] = round(float(df[f"{name}_dice_{c}"].mean()), 4)
            for c in ("LV", "MYO", "RV"):
                out[f"mean_{name}_hd95_{c}"] = round(float(df[f"{name}_hd95_{c}"].mean()), 2)
        out["mean_track_folding_pct"] = round(float(df["track_folding_pct"].mean()), 4)
        out["max_track_folding_pct"] = round(float(df["track_folding_pct"].max()), 4)
        col = "peak_global_circumferential_strain_pct"
        out["peak_global_circumferential_strain_pct_by_group"] = {
            str(g): round(float(v), 2) for g, v in df.groupby("group")[col].mean().items()}
    out["mean_runtime_s"] = round(float(df["runtime_s"].mean()), 2)
    return out


def evaluate_acdc(root: Path, subjects: list[str], out: Path,
                  reporter: ProgressReporter | None = None, keep_outputs: bool = False,
                  **options) -> dict:
    """Run :func:`evaluate_acdc_patient` on ``subjects`` and write ``per_subject.csv`` and
    ``summary.json`` into ``out`` (atomically)."""
    reporter = reporter or ProgressReporter()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="nimosef_eval_"))
    try:
        for i, pid in enumerate(subjects):
            reporter.update("evaluate", i / len(subjects), pid)
            folder = root / pid
            if not folder.is_dir():
                raise NimosefInputError(folder, "patient folder not found")
            rows.append(evaluate_acdc_patient(folder, work, **options))
            log.info("%s: %s", pid, {k: round(v, 3) for k, v in rows[-1].items()
                                     if isinstance(v, float)})
        df = pd.DataFrame(rows)
        summary = summarise(df)
        with atomic_path(out) as tmp:
            tmp.mkdir()
            df.to_csv(tmp / "per_subject.csv", index=False)
            atomic_write_text(tmp / "summary.json", json.dumps(
                {**summary, "options": {k: v for k, v in options.items()
                                        if isinstance(v, str | int | float | None)},
                 "subjects": subjects}, indent=1))
            if keep_outputs:
                shutil.copytree(work, tmp / "outputs")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reporter.close()
    return summary
