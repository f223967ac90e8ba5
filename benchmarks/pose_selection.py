"""Which of several fitted starting poses to keep: the fit loss, or agreement with the image?

    python benchmarks/pose_selection.py --manifest-root data/acdc_pp --split val [--root ACDC]
        [--subjects patient020 ...] [--csv rows.csv]

For each ACDC patient (ED/ES pair, as ``nimosef evaluate`` runs it) the heart is found from
the images and the cine is fitted in full from each of the starting poses of
``segment-track --pose-hypotheses 3`` (the rotation search's best, its runner-up, the best
after a pose-only warm-up). Each fit is scored against the labels (raw and refined by the
image) and described by three criteria that need no labels: its final loss (what
``--pose-hypotheses`` keeps now), the mean log evidence of the image under the refinement's
model (:func:`refine.refine_with_evidence`), and the agreement of the network's labels with
the refined ones (mean Dice over classes and frames). Prints the mean Dice of the fits each
criterion would keep, of the first pose (the default), and of the best pose (an oracle).
"Refined" here is :func:`refinement.refine.refine_with_evidence` and clean-up, without the LV cavity
fill that segment-track adds (:func:`refinement.refine.fill_lv_cavity`, later than these figures).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from common import acdc_ed_es, add_split_arguments, record, subjects_and_prior

from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.roi import ROI_MM, subject_from_cine
from nimosef_engine.evaluation.metrics import dice
from nimosef_engine.fitting.fit import FitConfig, fit_subject
from nimosef_engine.fitting.pose import (
    MAX_POSE_HYPOTHESES,
    choose_rotation,
    pose_hypotheses,
    rotated_frame,
)
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.pipeline.cycle_time import cycle_times_from_ed
from nimosef_engine.pipeline.localise import localise_heart
from nimosef_engine.pipeline.options import STANDARD
from nimosef_engine.refinement.cleanup import clean_labels
from nimosef_engine.refinement.refine import image_on_grid, quantise_image, refine_with_evidence
from nimosef_engine.sampling.fields import embed_frame, iter_frames

CLASSES = ((1, "LV"), (2, "MYO"), (3, "RV"))
CRITERIA = {"first pose (default)": None, "lowest fit loss": ("final_loss", min),
            "highest image evidence": ("evidence", max),
            "most agreement with the image": ("agreement", max)}


def score_fit(net, res, sd, gts, image) -> dict:
    """Dice (raw and refined, mean over ED and ES) and the two image criteria of one fit."""
    raw = {name: [] for _, name in CLASSES}
    ref = {name: [] for _, name in CLASSES}
    evidence, agreement = [], []
    for fr, gt in zip(iter_frames(net, res.code, sd, 1, "cpu", res.pose_matrix, probs=True),
                      gts, strict=True):
        post, ev = refine_with_evidence(image_on_grid(image[fr.index], 1), fr.probs)
        lab_raw = clean_labels(fr.probs.argmax(0).astype(np.uint8))
        lab_ref = clean_labels(post.argmax(0).astype(np.uint8))
        evidence.append(ev)
        agreement.append(np.nanmean([dice(lab_raw, lab_ref, c) for c, _ in CLASSES]))
        for c, name in CLASSES:
            raw[name].append(dice(embed_frame(lab_raw, sd, 1), gt, c))
            ref[name].append(dice(embed_frame(lab_ref, sd, 1), gt, c))
    return {"final_loss": float(res.final_loss), "evidence": float(np.mean(evidence)),
            "agreement": float(np.mean(agreement)),
            **{f"raw_{k}": float(np.nanmean(v)) for k, v in raw.items()},
            **{f"refined_{k}": float(np.nanmean(v)) for k, v in ref.items()}}


def patient(folder: Path, net, ckpt) -> list[dict]:
    info, cine, gts = acdc_ed_es(folder)
    preset = STANDARD
    pose = localise_heart(cine.frames, cine.affine_ras,
                          scale_mm=float(ckpt.get("norm_scale_mm", 100.0)), source=folder.name)
    times = cycle_times_from_ed(cine, 0, 1, ckpt.get("es_time_mean"))
    sd = subject_from_cine(cine, pose.frame, pose.roi_center_ras, times, ROI_MM, folder.name)
    image = quantise_image(sd.intensity)
    _, losses = choose_rotation(net, ckpt, sd, preset.rotations, preset.rotation_steps, "cpu",
                                ProgressReporter())
    steps = int((ckpt.get("fit_defaults") or {}).get("steps", FitConfig.steps))
    cfg = FitConfig(steps=steps, n_points=preset.n_points, pose=preset.pose,
                    restarts=preset.restarts, seed=0)
    rows = []
    for i, (angle, warm) in enumerate(pose_hypotheses(losses, MAX_POSE_HYPOTHESES)):
        cand = replace(sd, heart=rotated_frame(sd.heart, angle))
        res = fit_subject(net, subject_tensors(cand, "cpu"), replace(cfg, pose_warmup=warm),
                          ckpt["code_mean"])
        rows.append({"subject": folder.name, "group": info.group, "hypothesis": i,
                     "rotation_deg": angle, "pose_warmup_steps": warm,
                     **score_fit(net, res, cand, gts, image)})
    return rows


def kept(df: pd.DataFrame, criterion) -> pd.DataFrame:
    """One row per subject: the hypothesis ``criterion`` (column, min/max) keeps."""
    if criterion is None:
        return df[df["hypothesis"] == 0]
    col, pick = criterion
    idx = df.groupby("subject")[col].idxmin() if pick is min else \
        df.groupby("subject")[col].idxmax()
    return df.loc[idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_arguments(ap)
    ap.add_argument("--csv", help="write one row per patient and starting pose here")
    args = ap.parse_args()
    subjects, ckpt, net = subjects_and_prior(args)
    rows = []
    t0 = time.perf_counter()
    for pid in subjects:
        rows += patient(Path(args.root) / pid, net, ckpt)
        print(pd.DataFrame(rows[-MAX_POSE_HYPOTHESES:]).round(4).to_string(), flush=True)
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    best = df.assign(mean=df[[f"refined_{n}" for _, n in CLASSES]].mean(1))
    table = {name: kept(df, crit) for name, crit in CRITERIA.items()}
    table["best pose (oracle, refined Dice)"] = kept(best, ("mean", max))
    figures = {
        "subjects": len(subjects), "runtime_s": round(time.perf_counter() - t0, 1),
        "mean_dice": {name: {f"{kind}_{n}": round(float(k[f"{kind}_{n}"].mean()), 4)
                             for kind in ("raw", "refined") for _, n in CLASSES}
                      for name, k in table.items()},
        "kept_hypothesis": {name: k["hypothesis"].tolist() for name, k in table.items()}}
    record("pose_selection", figures)


if __name__ == "__main__":
    main()
