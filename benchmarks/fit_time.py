"""Fitting time per subject with the bundled prior (network frozen, code + pose fitted).

    python benchmarks/fit_time.py [--root PREPROCESSED] [--subjects 3] [--steps N]
        [--keep-subnormals] [--composed-gabor]

``--keep-subnormals`` runs as the engine did before it flushed subnormal numbers to zero
(``core.threads``); ``--composed-gabor`` lets autograd differentiate the Gabor formula instead
of :class:`model.gabor.GaborActivation`. The two measure what each change saves:
``python benchmarks/fit_time.py --subjects 1 --steps 30`` with and without them.
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
from nimosef_engine.model.gabor import EXP_FLOOR, GaborActivation
from nimosef_engine.training.validation import dice_scores, predict_subject_labels


def composed_gabor(pre: torch.Tensor, w0: float, s0: float) -> torch.Tensor:
    """The Gabor non-linearity as plain torch operations, differentiated by autograd."""
    f, s = pre.split(pre.shape[-1] // 2, dim=-1)
    return torch.cos(w0 * f) * torch.exp((-(s0 * s).square()).clamp(min=EXP_FLOOR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", help="preprocessed dataset (default: tests/data preprocessed)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--prior", default=str(BUNDLED_PRIOR))
    ap.add_argument("--keep-subnormals", action="store_true")
    ap.add_argument("--composed-gabor", action="store_true")
    args = ap.parse_args()
    if args.keep_subnormals:  # before torch starts its threads (common.py flushes them)
        torch.set_flush_denormal(False)
    if args.composed_gabor:
        GaborActivation.apply = staticmethod(composed_gabor)
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
                        "subnormals": "kept" if args.keep_subnormals else "flushed",
                        "gabor_derivatives": "autograd" if args.composed_gabor else "formed",
                        "mean_seconds_per_subject": round(mean, 2),
                        "seconds_per_step": round(mean / steps, 4),
                        "subjects": rows})


if __name__ == "__main__":
    main()
