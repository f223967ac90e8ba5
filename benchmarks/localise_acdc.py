"""Label-free heart localisation (``pipeline.localise``) measured on all ACDC patients.

    python benchmarks/localise_acdc.py --root ACDC_TRAINING_FOLDER [--limit N]

Each patient's ED and ES frames form a 2-frame cine; for even patient numbers the order is
reversed (ES, ED) so that the ED estimate is tested too. The reference is
``geometry.heart_frame_from_labels`` of the ED labels (ACDC {1: RV, 2: MYO, 3: LV} remapped
to NIMOSEF {1: LV, 2: MYO, 3: RV}). Figures: LV centre error (mm), whether the centre lies in
the labelled LV blood pool, x axis (LV -> RV) angle error, long-axis sign, ED index, runtime;
overall and per ACDC group. ``patient090_4d.nii.gz`` (the full 12-frame cine) is run too.

Caveat printed with the figures: every ACDC volume stores slices base -> apex and a similar
in-plane orientation, so a constant guess is also reported (``baseline_constant``) to show
what a method that ignores the image would score on these two axis figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import record

from nimosef_engine.core.geometry import (
    HeartFrame,
    heart_frame_from_labels,
    orthonormal_frame,
    ras_to_voxel,
    stack_normal,
    voxel_to_ras,
)
from nimosef_engine.data.acdc import parse_info_cfg, remap_acdc_labels
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.pipeline.localise import localise_heart


def load_pair(folder: Path):
    """``(frames (2, X, Y, Z), ed_labels (X, Y, Z) NIMOSEF, affine, group)`` of one patient."""
    info = parse_info_cfg(folder / "Info.cfg")
    ims = []
    for number in (info.ed, info.es):
        im, aff = load_nifti(folder / f"{folder.name}_frame{number:02d}.nii.gz", 3)
        ims.append(im)
    gt, _ = load_nifti(folder / f"{folder.name}_frame{info.ed:02d}_gt.nii.gz", 3,
                       dtype=np.uint8)
    return np.stack(ims), remap_acdc_labels(gt), aff, info.group


def compare(frame: HeartFrame, ref: HeartFrame, labels: np.ndarray,
            affine: np.ndarray) -> dict:
    """Centre error (mm), centre in the LV pool, x angle error (deg), long-axis sign."""
    ijk = np.round(ras_to_voxel(affine, frame.origin_ras[None])[0]).astype(int)
    inside = bool(np.all(ijk >= 0) and np.all(ijk < labels.shape) and labels[tuple(ijk)] == 1)
    cos_x = float(np.clip(frame.rotation[:, 0] @ ref.rotation[:, 0], -1, 1))
    return {"err_mm": float(np.linalg.norm(frame.origin_ras - ref.origin_ras)),
            "inside": inside, "angle_deg": float(np.degrees(np.arccos(cos_x))),
            "sign_ok": bool(frame.rotation[:, 2] @ ref.rotation[:, 2] > 0)}


def constant_guess(shape: tuple[int, ...], affine: np.ndarray) -> HeartFrame:
    """Image-blind guess: image centre, x along -i, z towards slice 0 (the ACDC habit)."""
    centre = voxel_to_ras(affine, (np.array(shape[:3], float)[None] - 1) / 2)[0]
    return HeartFrame(centre, orthonormal_frame(-affine[:3, 0], -stack_normal(affine)))


def summarise(rows: list[dict]) -> dict:
    """Summary figures of a list of per-patient rows."""
    err = np.array([r["err_mm"] for r in rows])
    ang = np.array([r["angle_deg"] for r in rows])
    return {"n": len(rows),
            "centre_err_mm_median": round(float(np.median(err)), 2),
            "centre_err_mm_p95": round(float(np.percentile(err, 95)), 2),
            "centre_err_mm_max": round(float(err.max()), 2),
            "frac_err_lt_10mm": round(float(np.mean(err < 10)), 3),
            "frac_inside_lv": round(float(np.mean([r["inside"] for r in rows])), 3),
            "x_angle_deg_median": round(float(np.median(ang)), 2),
            "x_angle_deg_p90": round(float(np.percentile(ang, 90)), 2),
            "frac_long_axis_sign_ok": round(float(np.mean([r["sign_ok"] for r in rows])), 3),
            "frac_ed_ok": round(float(np.mean([r.get("ed_ok", False) for r in rows])), 3)}


def run_4d(folder: Path) -> dict:
    """The full cine of patient090 against its ED labels."""
    data, aff = load_nifti(folder / f"{folder.name}_4d.nii.gz", 4)
    frames = np.moveaxis(data, -1, 0)
    info = parse_info_cfg(folder / "Info.cfg")
    gt, _ = load_nifti(folder / f"{folder.name}_frame{info.ed:02d}_gt.nii.gz", 3,
                       dtype=np.uint8)
    labels = remap_acdc_labels(gt)
    t0 = time.perf_counter()
    pose = localise_heart(frames, aff, source=folder.name)
    out = compare(pose.frame, heart_frame_from_labels(labels, aff), labels, aff)
    out.update(runtime_s=round(time.perf_counter() - t0, 3), n_frames=int(frames.shape[0]),
               ed_index=pose.ed_index, ed_true=info.ed - 1,
               confidence=round(pose.confidence, 3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", required=True, help="the ACDC training folder (patientXXX/)")
    ap.add_argument("--limit", type=int, help="only the first N patients (quick check)")
    args = ap.parse_args()
    folders = sorted(Path(args.root).glob("patient*"))[:args.limit]
    rows, base_rows, times = [], [], []
    for folder in folders:
        frames, labels, aff, group = load_pair(folder)
        reverse = int(folder.name[-3:]) % 2 == 0
        t0 = time.perf_counter()
        pose = localise_heart(frames[::-1] if reverse else frames, aff, source=folder.name)
        times.append(time.perf_counter() - t0)
        ref = heart_frame_from_labels(labels, aff)
        row = compare(pose.frame, ref, labels, aff)
        row.update(patient=folder.name, group=group, confidence=pose.confidence,
                   ed_ok=pose.ed_index == (1 if reverse else 0))
        rows.append(row)
        base_rows.append(compare(constant_guess(labels.shape, aff), ref, labels, aff))
        if not row["inside"] or row["angle_deg"] > 45 or not row["sign_ok"]:
            print(f"  {folder.name} {group}: err {row['err_mm']:.1f} mm inside "
                  f"{row['inside']} x {row['angle_deg']:.0f} deg sign {row['sign_ok']} "
                  f"conf {pose.confidence:.2f}")
    figures = {"all": summarise(rows),
               "groups": {g: summarise([r for r in rows if r["group"] == g])
                          for g in sorted({r["group"] for r in rows})},
               "runtime_s_mean": round(float(np.mean(times)), 3),
               "runtime_s_max": round(float(np.max(times)), 3),
               "confidence_median": round(float(np.median([r["confidence"] for r in rows])), 3),
               "baseline_constant": {k: v for k, v in summarise(base_rows).items()
                                     if k != "frac_ed_ok"}}
    p090 = Path(args.root) / "patient090"
    if (p090 / "patient090_4d.nii.gz").exists():
        figures["patient090_4d"] = run_4d(p090)
    record("localise_acdc", figures)


if __name__ == "__main__":
    main()
