"""The rotation search of segment-track (the longest part of its "localise" stage): one short
code fit per in-plane rotation, run one after the other (``fit_subject`` per rotated frame,
what segment-track ran before) or all rotations in one batched network pass
(:func:`fit.rotation_search_losses` with every rotation in one group, what segment-track runs
on a GPU; on a CPU it takes them one at a time).

    python benchmarks/rotation_search.py [--cine tests/data/acdc/patient090/patient090_4d.nii.gz]
        [--quality standard] [--repeats 2]

Prints both timings (best of ``--repeats``), each rotation's loss and the rotation each way
picks, on CPU or on the GPU when there is one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from common import ROOT, peak_rss_mb, record

from nimosef_engine.data.roi import ROI_MM, subject_from_cine
from nimosef_engine.fitting.fit import FitConfig, fit_subject, rotation_search_losses
from nimosef_engine.fitting.pose import ROTATION_POINTS, rotated_frame
from nimosef_engine.io.cine import load_cine
from nimosef_engine.losses.objective import subject_tensors
from nimosef_engine.model.bundled import load_prior
from nimosef_engine.pipeline.cycle_time import cycle_model_times
from nimosef_engine.pipeline.localise import localise_heart
from nimosef_engine.pipeline.options import QUALITY_PRESETS

DEMO = ROOT / "tests" / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz"


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cine", default=str(DEMO))
    ap.add_argument("--quality", default="standard", choices=[q for q, p in QUALITY_PRESETS.items()
                                                               if len(p.rotations) > 1])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt, net, pid = load_prior(None, device)
    cine = load_cine([args.cine])
    pose = localise_heart(cine.frames, cine.affine_ras,
                          scale_mm=float(ckpt.get("norm_scale_mm", 100.0)), source=args.cine)
    times, _ = cycle_model_times(cine, ckpt, pose.ed_index, pose.es_index)
    sd = subject_from_cine(cine, pose.frame, pose.roi_center_ras, times, ROI_MM, args.cine)
    preset = QUALITY_PRESETS[args.quality]
    angles, steps = preset.rotations, preset.rotation_steps
    code0 = ckpt["code_mean"].to(device)

    def one_by_one() -> list[float]:
        return [fit_subject(net, subject_tensors(replace(sd, heart=rotated_frame(sd.heart, a)),
                                                 device),
                            FitConfig(steps=steps, n_points=ROTATION_POINTS), code0).final_loss
                for a in angles]

    def batched() -> list[float]:
        return rotation_search_losses(net, subject_tensors(sd, device), angles, steps,
                                      ROTATION_POINTS, code0,
                                      max_batch_points=ROTATION_POINTS * len(angles))

    figures = {}
    for name, fn in (("one_by_one", one_by_one), ("all_at_once", batched)):
        best = float("inf")
        for _ in range(max(1, args.repeats)):
            _sync(device)
            t = time.perf_counter()
            losses = fn()
            _sync(device)
            best = min(best, time.perf_counter() - t)
        figures[name] = {"seconds": round(best, 3),
                         "losses": {int(a): round(v, 5) for a, v in zip(angles, losses,
                                                                         strict=True)},
                         "chosen_rotation_deg": int(angles[int(np.argmin(losses))])}
    figures["speedup"] = round(figures["one_by_one"]["seconds"] / figures["all_at_once"]["seconds"],
                               2)
    figures["max_abs_loss_difference"] = float(max(
        abs(figures["one_by_one"]["losses"][a] - figures["all_at_once"]["losses"][a])
        for a in figures["all_at_once"]["losses"]))
    on_gpu = device.type == "cuda"
    record("rotation_search", {"segment_track_runs": "all_at_once" if on_gpu else "one_by_one",
                               "cine": args.cine, "frames": cine.n_frames,
                               "quality": args.quality, "rotations": len(angles),
                               "steps": steps, "points_per_step": ROTATION_POINTS,
                               "prior_id": pid, **figures, "peak_rss_mb": round(peak_rss_mb())})


if __name__ == "__main__":
    main()
