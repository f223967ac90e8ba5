"""The whole cardiac cycle of a cine: does the motion follow the images? Both time models.

    python benchmarks/cycle_tracking.py [--quality standard]
        [--cine CINE --labels ED_GT ES_GT --label-frames A B] [--sunnybrook DICOM_FOLDER]

Runs Segment & Track on each cine twice, one run at a time, with ``--time-model landmarks``
(every frame's model time linear between ED and ES, diastole as systole reversed) and
``--time-model images`` (each frame placed by its own intensities), and prints per run:

- the agreement of the prior's labels with the slice network's (the runs refine with the
  slice network, the default), frame by frame (mean class
  Dice; ``summary.json`` ``refinement.prior_slice_agreement_per_frame``): over all frames and
  over the frames other than the localised ED and ES, which the time model places;
- the whole-cycle LV and RV EF (``summary.json``), beside the EF of the expert labels;
- the expert labels of frame A carried to frame B through the engine's fields
  (``from_ed_A`` after ``to_ed_B``, nearest neighbour in SimpleITK): Dice per class, beside the
  identity baseline (frame A's labels unmoved);
- the mean displacement (mm) at the last frame of the cycle (the one before ED) against its
  largest over the cycle: how far the motion returns to ED;
- the fit's final loss (how well the fitted model explains the cine's intensities, over the
  frames at their model times) and the fit and motion times.

Defaults: the bundled demo (ACDC patient090, 12 frames) and its expert labels of frames 4 and
11 (1-based; 0-based 3 and 10). ``--sunnybrook``: also the full 20-frame GE DICOM cine
SCD0000101 of the Sunnybrook Cardiac Data (no whole-heart labels: agreement and EF only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, TEST_ACDC, record

DEMO = TEST_ACDC / "patient090"
TIME_MODELS = ("landmarks", "images")


def run_segment_track(cine: Path, out: Path, time_model: str, quality: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "nimosef_engine", "segment-track", str(cine),
                           "--out", str(out), "--quality", quality, "--time-model", time_model,
                           "--no-meshes", "--progress", "none"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cine}: segment-track failed: {proc.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())


def expert_tracking(out: Path, labels: tuple[Path, Path], frames: tuple[int, int]) -> dict:
    """Frame ``frames[0]``'s expert labels carried to frame ``frames[1]`` through the run's
    fields, Dice per class against that frame's expert labels, and the identity baseline."""
    import SimpleITK as sitk

    from nimosef_engine.data.acdc import remap_acdc_labels
    from nimosef_engine.evaluation.metrics import dice

    a, b = frames
    field = {name: sitk.DisplacementFieldTransform(sitk.ReadImage(
        str(out / "motion" / f"{name}.nii.gz"), sitk.sitkVectorFloat64))
        for name in (f"from_ed_{a:02d}", f"to_ed_{b:02d}")}
    # the last transform added is applied first: frame b -> ED -> frame a
    to_a = sitk.CompositeTransform([field[f"from_ed_{a:02d}"], field[f"to_ed_{b:02d}"]])
    img_a, img_b = (sitk.ReadImage(str(p)) for p in labels)
    carried = sitk.Resample(img_a, img_b, to_a, sitk.sitkNearestNeighbor, 0, img_a.GetPixelID())

    def arr(img):
        return remap_acdc_labels(sitk.GetArrayFromImage(img).astype(np.uint8))

    gt_b = arr(img_b)
    row = {}
    for name, lab in (("track", arr(carried)), ("identity", arr(img_a))):
        scores = {c: dice(lab, gt_b, k) for k, c in ((1, "LV"), (2, "MYO"), (3, "RV"))}
        row[name] = {**{c: round(v, 4) for c, v in scores.items()},
                     "mean": round(float(np.mean(list(scores.values()))), 4)}
    return row


def labels_ef(labels: tuple[Path, Path]) -> dict:
    """LV and RV EF (%) of the expert labels of an ED and an ES frame."""
    from nimosef_engine.data.acdc import remap_acdc_labels
    from nimosef_engine.io.nifti import load_nifti

    ed, es = (remap_acdc_labels(load_nifti(p, 3, dtype=np.uint8)[0]) for p in labels)
    return {c: round(100 * (1 - (es == k).sum() / (ed == k).sum()), 2)
            for k, c in ((1, "LV"), (3, "RV"))}


def figures(summary: dict) -> dict:
    per_frame = np.array([np.nan if a is None else a for a in
                          summary["refinement"]["prior_slice_agreement_per_frame"]], float)
    landmarks = {summary["localised_ed_frame"], summary["localised_es_frame"]}
    others = [f for f in range(len(per_frame)) if f not in landmarks]
    motion = summary["motion"]
    disp = np.asarray(motion["mean_displacement_mm"])
    last = (int(motion["ed_frame"]) - 1) % len(disp)
    return {"agreement_mean": round(float(np.nanmean(per_frame)), 4),
            "agreement_other_frames": round(float(np.nanmean(per_frame[others])), 4)
            if others else None,
            "agreement_per_frame": per_frame.round(3).tolist(),
            "LV_EF_pct": summary["LV_EF_pct"], "RV_EF_pct": summary["RV_EF_pct"],
            "ed_frame": summary["ed_frame"], "es_frame": summary["es_frame"],
            "model_times": summary["model_times"], "time_model_record": summary["time_model"],
            "last_frame_displacement_mm": round(float(disp[last]), 3),
            "max_displacement_mm": round(float(disp.max()), 3),
            "folding_share_max": motion["folding_share_max"],
            "fit_loss": summary["fit"]["final_loss"],
            "fit_s": summary["stage_seconds"].get("fit"),
            "motion_s": summary["stage_seconds"].get("motion"),
            "runtime_s": summary["runtime_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", default="standard")
    ap.add_argument("--cine", type=Path, default=DEMO / "patient090_4d.nii.gz")
    ap.add_argument("--labels", type=Path, nargs=2, default=[
        DEMO / "patient090_frame04_gt.nii.gz", DEMO / "patient090_frame11_gt.nii.gz"],
        help="expert labels (ACDC values) of two frames of --cine")
    ap.add_argument("--label-frames", type=int, nargs=2, default=[3, 10],
                    help="0-based frames of --labels")
    ap.add_argument("--sunnybrook", type=Path, help="the SCD0000101 DICOM folder")
    ap.add_argument("--time-models", nargs="+", default=list(TIME_MODELS),
                    choices=TIME_MODELS)
    args = ap.parse_args()
    cines = [("cine", args.cine, tuple(args.labels))]
    if args.sunnybrook:
        cines.append(("sunnybrook_SCD0000101", args.sunnybrook, None))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cine, labels in cines:
            for model in args.time_models:
                out = Path(tmp) / f"{name}_{model}"
                row = {"cine": str(cine.resolve().relative_to(ROOT)) if cine.resolve()
                       .is_relative_to(ROOT) else cine.name, "time_model": model,
                       **figures(run_segment_track(cine, out, model, args.quality))}
                if labels:
                    row["labels_EF_pct"] = labels_ef(labels)
                    row["expert_tracking"] = expert_tracking(out, labels,
                                                             tuple(args.label_frames))
                runs.append(row)
                print(json.dumps(row), flush=True)
    record("cycle_tracking", {"quality": args.quality, "runs": runs})


if __name__ == "__main__":
    main()
