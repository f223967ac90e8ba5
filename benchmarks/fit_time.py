"""Fitting time per subject with the bundled prior (network frozen, code + pose fitted).

    python benchmarks/fit_time.py [--root PREPROCESSED] [--subjects 3] [--steps N]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import preprocessed_test_data, record

from nimosef_engine.data.manifest import load_split
from nimosef_engine.fitting.fit import FitConfig, fit_subject
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.model.bundled import BUNDLED_PRIOR
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.training.validation import dice_scores, predict_subject_labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", help="preprocessed dataset (default: tests/data preprocessed)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--prior", default=str(BUNDLED_PRIOR))
    args = ap.parse_args()
    root = args.root or preprocessed_test_data()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    ckpt = load_checkpoint(args.prior)
    net = model_from_checkpoint(ckpt, device)
    load_s = time.perf_counter() - t0
    steps = args.steps or int((ckpt.get("fit_defaults") or {}).get("steps", FitConfig.steps))
    rows = []
    for sd in load_split(root, args.split)[: args.subjects]:
        t0 = time.perf_counter()
        res = fit_subject(net, subject_tensors(sd, device), FitConfig(steps=steps, pose=True),
                          ckpt["code_mean"].to(device))
        secs = time.perf_counter() - t0
        d = dice_scores(predict_subject_labels(net, sd, res.code, res.pose_matrix, device),
                        sd.labels) if sd.labels is not None else {}
        rows.append({"subject": sd.subject_id, "frames": sd.n_frames,
                     "voxels": int(sd.intensity[0].size), "seconds": round(secs, 2),
                     **{f"dice_{k}": round(v, 3) for k, v in d.items()}})
    mean = sum(r["seconds"] for r in rows) / len(rows)
    record("fit_time", {"prior_load_s": round(load_s, 3), "steps": steps,
                        "mean_seconds_per_subject": round(mean, 2),
                        "subjects": rows})


if __name__ == "__main__":
    main()
