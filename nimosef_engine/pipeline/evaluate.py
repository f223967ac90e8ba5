"""Scoring Segment & Track against labels it never saw: ACDC (ED/ES) and Sunnybrook contours."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from nimosef_engine.core.atomic import atomic_path, atomic_write_text
from nimosef_engine.core.errors import NimosefInputError
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.acdc import parse_info_cfg, remap_acdc_labels
from nimosef_engine.evaluation.metrics import dice, volumes_ml
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.pipeline.segment_track import segment_track

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
            "group": info.group, **quality_columns(summary)}


def ed_to_es_field(out: Path, summary: dict) -> Path:
    """The field of a segment-track run on an ED/ES pair (input frames 0, 1) that maps ES
    points to their ED positions: ``to_ed_01`` when the run's ED is frame 0, else
    ``from_ed_00`` (its ED is then frame 1, and frame 0 is where ED's tissue goes)."""
    ed = int(summary["motion"]["ed_frame"])
    return out / "motion" / ("to_ed_01.nii.gz" if ed == 0 else "from_ed_00.nii.gz")


def tracking_scores(field: Path, ed_gt: Path, es_gt: Path,
                    remap: Callable[[np.ndarray], np.ndarray] = remap_acdc_labels) -> dict:
    """The expert ED labels carried to ES through ``field`` (an ITK displacement field from
    ES points to ED positions, applied as ``sitk.Resample`` with nearest neighbour) against the
    expert ES labels: Dice and HD95 (mm) per class, beside the identity baseline (the ED
    labels unmoved), and the share (%) of ES heart voxels where the field folds (Jacobian
    determinant <= 0). ``remap``: the label files' values -> NIMOSEF's (ACDC's by default)."""
    import SimpleITK as sitk

    from nimosef_engine.evaluation.metrics import surface_distances
    from nimosef_engine.motion.fields import field_file_jacobian_det

    ed_img, es_img = (sitk.ReadImage(str(p)) for p in (ed_gt, es_gt))
    disp = sitk.ReadImage(str(field), sitk.sitkVectorFloat64)
    det = field_file_jacobian_det(field)  # (x, y, z), right on oblique grids too
    warped = sitk.Resample(ed_img, es_img, sitk.DisplacementFieldTransform(disp),
                           sitk.sitkNearestNeighbor, 0, ed_img.GetPixelID())
    es, es_aff = load_nifti(es_gt, ndim=3, dtype=np.uint8)
    es = remap(es)

    def labels_of(img):  # sitk (z, y, x) -> NIMOSEF labels (x, y, z)
        return remap(sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.uint8))

    row = {}
    for name, lab in (("track", labels_of(warped)), ("identity", labels_of(ed_img))):
        for c, cname in ((1, "LV"), (2, "MYO"), (3, "RV")):
            row[f"{name}_dice_{cname}"] = dice(lab, es, c)
            row[f"{name}_hd95_{cname}"] = surface_distances(lab == c, es == c, es_aff)["hd95"]
        row[f"{name}_dice_mean"] = float(np.nanmean([row[f"{name}_dice_{c}"]
                                                     for c in ("LV", "MYO", "RV")]))
    heart = es > 0
    row["track_folding_pct"] = 100.0 * float((det[heart] <= 0).mean()) if heart.any() else 0.0
    return row


def peak_global_strain(strain_csv: Path, column: str = "circumferential_pct") -> float:
    """Peak (largest magnitude over the frames) global strain (%) of a ``strain.csv``:
    circumferential by default, or ``column`` (``radial_pct``, ``longitudinal_pct``)."""
    from nimosef_engine.motion.strain import peak_strain

    return float(peak_strain(pd.read_csv(strain_csv, dtype={"segment": str}), column)
                 .get("global", np.nan))


def quality_columns(summary: dict) -> dict:
    """The quality verdict of a segment-track ``summary`` as flat columns: ``quality``,
    ``quality_reasons`` and each signal (``q_<name>``, agreements as ``q_agreement_<class>``),
    so that the verdict can be recomputed from a per-subject table."""
    q = summary["quality"]
    row = {"quality": q["verdict"], "quality_reasons": " | ".join(q["reasons"])}
    for k, v in q["signals"].items():
        if isinstance(v, dict):
            row.update({f"q_{k}_{c}": x for c, x in v.items()})
        elif v is not None or k != "agreement":
            row[f"q_{k}"] = v
    return row


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
            "runtime_s": summary["runtime_s"], "LV_EF_pct": summary["LV_EF_pct"],
            "LV_EDV_mL": summary["LV_EDV_mL"], "quality": summary["quality"]}


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
    if "quality" in df:
        out["quality_counts"] = {str(k): int(v) for k, v in df["quality"].value_counts().items()}
    return out


PAIR_CLASSES = {"LV": 1, "MYO": 2, "RV": 3}
DEFAULT_PAIR_ES_TIME = 0.35  # ES as a cycle fraction when a pairs file gives none


def load_pairs_file(path: Path) -> list[dict]:
    """Subjects of a pairs file: JSON ``{"subjects": [{"id", "ed", "es", "ed_labels",
    "es_labels", "es_time"?, "label_map"?}, ...]}`` (or the list alone). Paths are relative
    to the file; ``es_time`` is ES as a fraction of the cycle after ED (default
    :data:`DEFAULT_PAIR_ES_TIME`); ``label_map`` maps each label value of the label files to
    ``LV``, ``MYO`` or ``RV`` (default ``{"1": "LV", "2": "MYO", "3": "RV"}``; ACDC files:
    ``{"3": "LV", "2": "MYO", "1": "RV"}``); other values count as background."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NimosefInputError(path, "pairs file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NimosefInputError(path, f"not a JSON pairs file ({e})") from None
    subjects = doc.get("subjects") if isinstance(doc, dict) else doc
    if not isinstance(subjects, list) or not subjects:
        raise NimosefInputError(path, 'expected {"subjects": [...]} with at least one subject')
    out, seen = [], set()
    for i, s in enumerate(subjects):
        where = f"subject {i + 1}"
        if not isinstance(s, dict):
            raise NimosefInputError(path, f"{where} is not an object")
        missing = [k for k in ("ed", "es", "ed_labels", "es_labels") if k not in s]
        if missing:
            raise NimosefInputError(path, f"{where} lacks {', '.join(missing)}")
        sid = str(s.get("id", f"pair{i + 1:03d}"))
        if sid in seen or not sid or "/" in sid or sid.startswith("."):
            raise NimosefInputError(path, f"{where}: id {sid!r} is repeated or not a name")
        seen.add(sid)
        es_time = s.get("es_time", DEFAULT_PAIR_ES_TIME)
        if not isinstance(es_time, int | float) or not 0.0 < float(es_time) < 1.0:
            raise NimosefInputError(path, f"{where}: es_time must lie in (0, 1), got {es_time!r}")
        lmap = s.get("label_map", {"1": "LV", "2": "MYO", "3": "RV"})
        if not isinstance(lmap, dict) or not set(lmap.values()) <= set(PAIR_CLASSES):
            raise NimosefInputError(path, f"{where}: label_map must map label values to "
                                          f"{', '.join(PAIR_CLASSES)}")
        try:
            lut = np.zeros(256, np.uint8)
            for k, v in lmap.items():
                lut[int(k)] = PAIR_CLASSES[v]
        except (ValueError, IndexError):
            raise NimosefInputError(path, f"{where}: label_map keys must be label values "
                                          "0-255") from None
        files = {k: (Path(path).parent / s[k]) for k in ("ed", "es", "ed_labels", "es_labels")}
        for k, f in files.items():
            if not f.is_file():
                raise NimosefInputError(f, f"{where}'s {k} file not found")
        out.append({"id": sid, **files, "es_time": float(es_time), "lut": lut,
                    "group": str(s.get("group", ""))})
    return out


def evaluate_pair(pair: dict, work: Path, **options) -> dict:
    """Segment & Track one labelled ED/ES pair of :func:`load_pairs_file` (no labels), score it
    against its labels."""
    out = work / pair["id"]
    summary = segment_track([pair["ed"], pair["es"]], out, frame_times=[0.0, pair["es_time"]],
                            ed_frame=0, overwrite=True, **options)
    pred, aff = load_nifti(out / "seg.nii.gz", ndim=4, dtype=np.uint8)
    gts = []
    for key in ("ed_labels", "es_labels"):
        lab = load_nifti(pair[key], ndim=3, dtype=np.int64)[0]
        if lab.shape != pred.shape[:3]:
            raise NimosefInputError(pair[key], f"label map shape {lab.shape} differs from the "
                                               f"image's {pred.shape[:3]}")
        gts.append(pair["lut"][np.clip(lab, 0, 255)])
    return {"subject": pair["id"], "runtime_s": summary["runtime_s"],
            "fit_loss": summary["fit"]["final_loss"],
            **score_ed_es([pred[..., 0], pred[..., 1]], gts, aff),
            **tracking_scores(ed_to_es_field(out, summary), pair["ed_labels"],
                              pair["es_labels"], lambda a: pair["lut"][a]),
            "peak_global_circumferential_strain_pct": peak_global_strain(out / "strain.csv"),
            "group": pair["group"], **quality_columns(summary)}


def evaluate_acdc(root: Path, subjects: list[str], out: Path,
                  reporter: ProgressReporter | None = None, keep_outputs: bool = False,
                  **options) -> dict:
    """Run :func:`evaluate_acdc_patient` on ``subjects`` and write ``per_subject.csv`` and
    ``summary.json`` into ``out`` (atomically)."""
    def case(pid: str):
        folder = root / pid
        if not folder.is_dir():
            raise NimosefInputError(folder, "patient folder not found")
        return lambda work: evaluate_acdc_patient(folder, work, **options)

    return evaluate_cases([(pid, case(pid)) for pid in subjects], out, reporter,
                          keep_outputs, options)


def evaluate_pairs(pairs_file: Path, out: Path, reporter: ProgressReporter | None = None,
                   keep_outputs: bool = False, **options) -> dict:
    """Run :func:`evaluate_pair` on every subject of ``pairs_file`` (:func:`load_pairs_file`);
    writes ``per_subject.csv`` and ``summary.json`` into ``out`` (atomically)."""
    pairs = load_pairs_file(pairs_file)
    cases = [(p["id"], lambda work, p=p: evaluate_pair(p, work, **options)) for p in pairs]
    return evaluate_cases(cases, out, reporter, keep_outputs, options)


def evaluate_cases(cases: list[tuple[str, Callable[[Path], dict]]], out: Path,
                   reporter: ProgressReporter | None, keep_outputs: bool,
                   options: dict) -> dict:
    """Score each ``(name, run)`` case (``run(work_folder) -> row``), then write
    ``per_subject.csv`` and ``summary.json`` (:func:`summarise`) into ``out`` atomically,
    with the segment-track outputs under ``outputs/`` if ``keep_outputs``."""
    reporter = reporter or ProgressReporter()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="nimosef_eval_"))
    try:
        for i, (name, run) in enumerate(cases):
            reporter.update("evaluate", i / len(cases), name)
            rows.append(run(work))
            log.info("%s: %s", name, {k: round(v, 3) for k, v in rows[-1].items()
                                      if isinstance(v, float)})
        df = pd.DataFrame(rows)
        summary = summarise(df)
        with atomic_path(out) as tmp:
            tmp.mkdir()
            df.to_csv(tmp / "per_subject.csv", index=False)
            atomic_write_text(tmp / "summary.json", json.dumps(
                {**summary, "options": {k: v for k, v in options.items()
                                        if isinstance(v, str | int | float | None)},
                 "subjects": [name for name, _ in cases]}, indent=1))
            if keep_outputs:
                shutil.copytree(work, tmp / "outputs")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reporter.close()
    return summary
