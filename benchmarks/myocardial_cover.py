"""How much of the LV blood pool's border is myocardium, slice by slice
(:func:`nimosef_engine.refinement.cleanup.myocardial_cover`): on every labelled frame of the ACDC
training set (where the experts end the LV), and on the ED and ES label maps of a
segment-track result against its labels (which slices the result labels beyond the experts'
base).

    python benchmarks/myocardial_cover.py --root ACDC_TRAINING
    python benchmarks/myocardial_cover.py --result EVAL/outputs/ID --pairs PAIRS.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import record

from nimosef_engine.data.acdc import remap_acdc_labels
from nimosef_engine.io.nifti import load_nifti
from nimosef_engine.pipeline.evaluate import load_pairs_file
from nimosef_engine.refinement.cleanup import myocardial_cover


def acdc_expert_cover(root: Path) -> dict:
    """The lowest cover of each labelled ACDC frame: its percentiles, and how many frames have
    a label on a slice beyond the LV's base."""
    lowest, beyond = [], 0
    files = sorted(root.glob("patient*/patient*_frame*_gt.nii.gz"))
    for f in files:
        lab = remap_acdc_labels(load_nifti(f, 3, dtype=np.uint8)[0])
        lowest.append(float(np.nanmin(myocardial_cover(lab))))
        ks = np.flatnonzero((lab == 1).any((0, 1)))
        area = (lab == 1).sum((0, 1))[ks]
        third = max(1, len(ks) // 3)
        base_low = area[:third].mean() >= area[-third:].mean()
        labelled = np.flatnonzero((lab > 0).any((0, 1)))
        beyond += bool((labelled < ks.min()).any() if base_low else (labelled > ks.max()).any())
    pct = np.percentile(lowest, [0, 1, 5, 50])
    return {"frames": len(files), "lowest_cover_percentiles_0_1_5_50": np.round(pct, 3).tolist(),
            "frames_labelled_beyond_the_lv_base": beyond}


def result_cover(result: Path, pair: dict) -> dict:
    """Per slice of the result's ED and ES frames: LV voxels of the result and of the labels,
    and the result's cover."""
    seg = load_nifti(result / "seg.nii.gz", 4, dtype=np.uint8)[0]
    out = {}
    for i, (name, key) in enumerate((("ED", "ed_labels"), ("ES", "es_labels"))):
        gt = pair["lut"][load_nifti(pair[key], 3, dtype=np.int64)[0].clip(0, 255)]
        cover = myocardial_cover(seg[..., i])
        out[name] = [{"slice": k, "lv_voxels": int((seg[:, :, k, i] == 1).sum()),
                      "lv_voxels_labels": int((gt[:, :, k] == 1).sum()),
                      "cover": None if np.isnan(cover[k]) else round(float(cover[k]), 2)}
                     for k in range(seg.shape[2])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="ACDC training folder")
    ap.add_argument("--result", type=Path, help="a segment-track output of an ED/ES pair")
    ap.add_argument("--pairs", type=Path, help="the pairs file holding the result's labels")
    args = ap.parse_args()
    figures = {}
    if args.root:
        figures["acdc_experts"] = acdc_expert_cover(args.root)
    if args.result:
        pairs = {p["id"]: p for p in load_pairs_file(args.pairs)}
        figures["result"] = {"folder": str(args.result),
                             **result_cover(args.result, pairs[args.result.name])}
    if not figures:
        raise SystemExit("give --root and/or --result with --pairs")
    record("myocardial_cover", figures)


if __name__ == "__main__":
    main()
