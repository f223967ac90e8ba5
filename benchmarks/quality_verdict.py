"""The quality verdict's false alarms and misses.

False alarms: the verdicts recorded by ``nimosef evaluate`` (per_subject.csv, ``quality``) on
real hearts, recomputed from the recorded signals with the current thresholds
(:func:`nimosef_engine.pipeline.quality.verdict`), so that a change of threshold needs no new fits.
Misses: inputs that are not a heart, or not enough of one, built from a real cine
(ACDC patient090, shipped in tests/data), each run through ``nimosef segment-track``; a miss
is a result written with the verdict ``ok``.

    python benchmarks/quality_verdict.py --eval eval/acdc_val eval/acdc_test
    python benchmarks/quality_verdict.py --broken --work /tmp/quality_cases
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, record

from nimosef_engine.io.nifti import load_nifti, save_nifti
from nimosef_engine.pipeline.quality import verdict

CINE = ROOT / "tests" / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz"


def signals_from_row(row: pd.Series) -> dict:
    """The verdict's signals from a per_subject.csv row (``q_`` columns)."""
    agree = {c: row.get(f"q_agreement_{c}") for c in ("LV", "MYO", "RV")}
    return {
        "localisation_confidence": row.get("q_localisation_confidence"),
        "fit_loss": row.get("q_fit_loss"),
        "agreement": None if all(pd.isna(v) for v in agree.values()) else
        {c: float(v) for c, v in agree.items() if not pd.isna(v)},
        "ed_volumes_ml": {c: row.get(f"q_ed_volumes_ml_{c}") for c in ("LV", "MYO", "RV")},
        "lv_slices": int(row["q_lv_slices"]), "lv_enclosed": row.get("q_lv_enclosed"),
        **{k: row.get(f"q_{k}") for k in ("LV_EDV_mL", "RV_EDV_mL", "LV_EF_pct",
                                           "RV_EF_pct", "MYO_mass_g")}}


def false_alarms(eval_dirs: list[Path]) -> dict:
    out = {}
    for d in eval_dirs:
        df = pd.read_csv(d / "per_subject.csv")
        verdicts = [verdict(signals_from_row(r)) for _, r in df.iterrows()]
        flagged = {r["subject"]: v["reasons"] for (_, r), v in zip(df.iterrows(), verdicts,
                                                                    strict=True)
                   if v["verdict"] != "ok"}
        out[d.name] = {"n": len(df), "check": sum(v["verdict"] == "check" for v in verdicts),
                       "fail": sum(v["verdict"] == "fail" for v in verdicts),
                       "flagged": flagged}
        print(d.name, json.dumps(out[d.name]), flush=True)
    return out


def broken_inputs(work: Path) -> dict[str, Path]:
    """Not a heart, or not enough of one, from the real cine ``CINE`` (X, Y, Z, T)."""
    img, aff = load_nifti(CINE)
    rng = np.random.default_rng(0)
    x, y, z, t = img.shape
    cases: dict[str, np.ndarray] = {
        "one_slice": img[:, :, z // 2: z // 2 + 1],
        "two_apical_slices": img[:, :, -2:],
        "contrast_inverted": img.max() - img,
        "static": np.repeat(img[..., :1], t, axis=3),
        "noise": rng.uniform(0, float(img.max()), img.shape).astype(np.float32),
        "scrambled_blocks": _scramble(img, 16, rng),
        "heart_cropped_out": np.concatenate([img[: x // 4], img[: x // 4][::-1]] * 2, 0),
    }
    xx, yy = np.mgrid[:x, :y]
    blob = np.zeros(img.shape, np.float32)
    for k in range(t):  # a smooth bright blob that swells and shrinks: not a heart
        r = 18 + 8 * np.cos(2 * np.pi * k / t)
        blob[..., k] = (200 * np.exp(-((xx - x / 2) ** 2 + (yy - y / 2) ** 2) / r ** 2))[..., None]
    cases["smooth_blob"] = blob + rng.normal(0, 5, blob.shape).astype(np.float32)
    work.mkdir(parents=True, exist_ok=True)
    return {name: save_nifti(work / f"{name}.nii.gz", a.astype(np.float32), aff)
            for name, a in cases.items()}


def _scramble(img: np.ndarray, block: int, rng) -> np.ndarray:
    """In-plane blocks of ``block`` pixels shuffled (the same shuffle in every slice and frame):
    the image's intensities and texture, no anatomy."""
    bx, by = img.shape[0] // block, img.shape[1] // block
    out = img[: bx * block, : by * block].copy()
    tiles = out.reshape(bx, block, by, block, *img.shape[2:]).swapaxes(1, 2).reshape(
        bx * by, block, block, *img.shape[2:])
    tiles = tiles[rng.permutation(len(tiles))]
    return tiles.reshape(bx, by, block, block, *img.shape[2:]).swapaxes(1, 2).reshape(
        out.shape)


def misses(work: Path, extra: list[str]) -> dict:
    out = {}
    for name, path in broken_inputs(work).items():
        res_dir = work / f"{name}_out"
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nimosef_engine", "segment-track",
                               str(path), "--out", str(res_dir), "--overwrite", "--no-meshes",
                               "--res-factor-z", "1", "--progress", "none", *extra],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            q = json.loads((res_dir / "summary.json").read_text())["quality"]
            outcome, why = q["verdict"], q["reasons"]
        else:
            outcome, why = "refused", proc.stderr.strip().splitlines()[-1:]
        out[name] = {"outcome": outcome, "exit": proc.returncode, "why": why,
                     "seconds": round(time.perf_counter() - t, 1)}
        print(name, json.dumps(out[name]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", nargs="*", type=Path, default=[],
                    help="folders written by nimosef evaluate (per_subject.csv)")
    ap.add_argument("--broken", action="store_true", help="run the broken inputs")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nimosef_quality_cases"))
    ap.add_argument("--engine-args", nargs="*", default=["--quality", "fast"],
                    help="extra segment-track options for the broken inputs")
    args = ap.parse_args()
    figures: dict = {}
    if args.eval:
        figures["false_alarms"] = false_alarms(args.eval)
    if args.broken:
        found = misses(args.work, args.engine_args)
        figures["broken_inputs"] = found
        figures["missed"] = sorted(k for k, v in found.items() if v["outcome"] == "ok")
    if not figures:
        raise SystemExit("nothing to do: give --eval and/or --broken")
    record("quality_verdict", figures)


if __name__ == "__main__":
    main()
