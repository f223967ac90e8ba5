"""How much of Segment & Track's error is the heart frame, how much the prior itself.

    python benchmarks/pose_sensitivity.py [--root ACDC] [--subjects patient020 ...]
        [--manifest-root data/acdc_pp --split val]

For each ACDC patient (ED/ES pair, as ``nimosef evaluate`` runs it) the code and pose are
fitted twice with the same settings as the ``standard`` quality: once in the heart frame that
Segment & Track finds without labels (localisation, then the rotation search), once in the
frame the prior was trained in (``geometry.heart_frame_from_labels`` of the ED labels). Dice
of both against the labels, and the found frame's error (LV centre in mm, LV -> RV axis in
degrees). The labels choose the second frame only: they are never fitted.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import acdc_ed_es, add_split_arguments, record, subjects_and_prior
from localise_acdc import compare

from nimosef_engine.core.geometry import heart_frame_from_labels
from nimosef_engine.core.progress import ProgressReporter
from nimosef_engine.data.roi import ROI_MM, subject_from_cine
from nimosef_engine.evaluation.metrics import dice
from nimosef_engine.fitting.fit import FitConfig, fit_subject
from nimosef_engine.fitting.pose import choose_rotation
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.pipeline.cycle_time import cycle_times_from_ed
from nimosef_engine.pipeline.localise import localise_heart
from nimosef_engine.pipeline.options import STANDARD
from nimosef_engine.refinement.cleanup import clean_labels
from nimosef_engine.sampling.fields import embed_frame, sample_fields

CLASSES = ((1, "LV"), (2, "MYO"), (3, "RV"))


def fit_and_dice(net, ckpt, sd, gts, preset, device) -> dict[str, float]:
    """Fit as segment-track does (steps, points, pose); mean Dice over ED and ES per class."""
    steps = int((ckpt.get("fit_defaults") or {}).get("steps", FitConfig.steps))
    res = fit_subject(net, subject_tensors(sd, device),
                      FitConfig(steps=steps, n_points=preset.n_points, pose=preset.pose),
                      ckpt["code_mean"].to(device))
    labels = sample_fields(net, res.code, sd, 1, device, res.pose_matrix)[0]
    scores = {name: [] for _, name in CLASSES}
    for i, gt in enumerate(gts):
        pred = embed_frame(clean_labels(labels[i]), sd, 1)
        for c, name in CLASSES:
            scores[name].append(dice(pred, gt, c))
    return {name: round(float(np.mean(v)), 4) for name, v in scores.items()}


def patient(folder: Path, net, ckpt, device) -> dict:
    info, cine, gts = acdc_ed_es(folder)
    scale = float(ckpt.get("norm_scale_mm", 100.0))
    preset = STANDARD
    pose = localise_heart(cine.frames, cine.affine_ras, scale_mm=scale, source=folder.name)
    ref = heart_frame_from_labels(gts[0], cine.affine_ras, scale)
    times = cycle_times_from_ed(cine, 0, 1, ckpt.get("es_time_mean"))
    found = subject_from_cine(cine, pose.frame, pose.roi_center_ras, times, ROI_MM, folder.name)
    heart, _ = choose_rotation(net, ckpt, found, preset.rotations, preset.rotation_steps,
                               device, ProgressReporter())
    found = replace(found, heart=heart)
    labelled = subject_from_cine(cine, ref, ref.origin_ras, times, ROI_MM, folder.name)
    err = compare(heart, ref, gts[0], cine.affine_ras)
    return {"subject": folder.name, "group": info.group, "frame_err_mm": round(err["err_mm"], 1),
            "frame_err_deg": round(err["angle_deg"], 1),
            "dice_found_frame": fit_and_dice(net, ckpt, found, gts, preset, device),
            "dice_labels_frame": fit_and_dice(net, ckpt, labelled, gts, preset, device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_split_arguments(ap)
    args = ap.parse_args()
    subjects, ckpt, net = subjects_and_prior(args)
    rows = []
    t0 = time.perf_counter()
    for pid in subjects:
        rows.append(patient(Path(args.root) / pid, net, ckpt, "cpu"))
        print(rows[-1], flush=True)
    figures = {"subjects": len(rows), "runtime_s": round(time.perf_counter() - t0, 1),
               "rows": rows}
    for key in ("dice_found_frame", "dice_labels_frame"):
        figures[f"mean_{key}"] = {name: round(float(np.mean([r[key][name] for r in rows])), 4)
                                  for _, name in CLASSES}
    figures["median_frame_err_mm"] = float(np.median([r["frame_err_mm"] for r in rows]))
    figures["median_frame_err_deg"] = float(np.median([r["frame_err_deg"] for r in rows]))
    record("pose_sensitivity", figures)


if __name__ == "__main__":
    main()
