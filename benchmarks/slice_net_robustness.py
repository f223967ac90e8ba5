"""How the slice network holds up when the scanner changes: its labels alone (argmax) on the
ED and ES frames of a preprocessed split, under each fixed shift of
:data:`nimosef_engine.training.scanner_augment.SHIFTS` (intensity response, bias field, noise, lower
resolution, ringing, another contrast curve). Prints and records the mean 3D Dice per class
and the mean |LV volume change| against the unshifted image, per shift.

    python benchmarks/slice_net_robustness.py --root data/acdc_pp --split val
    python benchmarks/slice_net_robustness.py --root data/acdc_pp --split val \
        --slice-net runs/slice_net/slice_unet.pt [--flips]

``--flips``: the network's probabilities averaged over each slice's four in-plane mirror views.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import record

from nimosef_engine.core.geometry import spacing_of
from nimosef_engine.data.manifest import load_split
from nimosef_engine.evaluation.metrics import dice_per_class
from nimosef_engine.model.bundled import load_slice_net
from nimosef_engine.refinement.slice_evidence import slice_probabilities
from nimosef_engine.training.scanner_augment import SHIFTS, as_numpy_frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="preprocessed dataset (nimosef preprocess)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--slice-net", help="checkpoint (default: the bundled one)")
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=list(SHIFTS))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--flips", action="store_true",
                    help="average the network over the in-plane mirror views")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, net_id = load_slice_net(args.slice_net)
    subjects = load_split(args.root, args.split)
    t0 = time.perf_counter()
    rows = {}
    for name in args.shifts:
        scores, dv = [], []
        for s in subjects:
            sp = float(spacing_of(s.crop_affine_ras)[0])
            for t in range(s.n_frames):
                clean = slice_probabilities(net, s.intensity[t], sp, args.flips).argmax(0)
                img = as_numpy_frame(SHIFTS[name], s.intensity[t])
                pred = slice_probabilities(net, img, sp, args.flips).argmax(0)
                scores.append(dice_per_class(pred, s.labels[t]))
                n_clean = max(1, int((clean == 1).sum()))
                dv.append(abs(int((pred == 1).sum()) - n_clean) / n_clean)
        rows[name] = {**{f"dice_{k}": round(float(np.nanmean([d[k] for d in scores])), 4)
                         for k in scores[0]},
                      "mean_abs_LV_volume_change_pct": round(100 * float(np.mean(dv)), 2)}
        print(name, rows[name], flush=True)
    record("slice_net_robustness", {"split": args.split, "slice_net_id": net_id,
                                    "flips": args.flips, "n_subjects": len(subjects),
                                    "shifts": rows,
                                    "seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
