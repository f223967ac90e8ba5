"""Sampling speed of the frozen network: points per second, and the z-slider path.

    python benchmarks/sampling.py [--device auto]

Reports points/s on CPU (float32) and, on a GPU, float32, TF32 and bf16; the time to resample
one frame of the demo cine at z factor 4 (median of 5; target <= 2 s on CPU: the Slicer slider
must feel live) and the whole cine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import ROOT, record

from nimosef_engine.data.roi import subject_from_cine
from nimosef_engine.io.cine import load_cine
from nimosef_engine.model.bundled import BUNDLED_PRIOR
from nimosef_engine.model.checkpoint import load_checkpoint, model_from_checkpoint
from nimosef_engine.pipeline.cycle_time import cycle_times_from_ed
from nimosef_engine.pipeline.localise import localise_heart
from nimosef_engine.sampling.fields import predict_points, sample_fields

CINE = ROOT / "tests" / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz"


def points_per_second(net, code, device, dtype=None, n=200_000, repeats=3) -> float:
    coords = torch.rand(n, 3, device=device) * 2 - 1
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            predict_points(net, code, coords, 0.3, chunk=65536 if device.type == "cuda"
                           else 16384)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return round(n / best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prior", default=str(BUNDLED_PRIOR))
    args = ap.parse_args()
    ckpt = load_checkpoint(args.prior)
    figures: dict = {"points_per_second": {}}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                        else [])
    cine = load_cine([CINE])
    pose = localise_heart(cine.frames, cine.affine_ras, source=str(CINE))
    sd = subject_from_cine(cine, pose.frame, pose.roi_center_ras,
                           cycle_times_from_ed(cine, pose.ed_index), 160.0, str(CINE))
    for dev in devices:
        net = model_from_checkpoint(ckpt, dev)
        code = ckpt["code_mean"].to(dev)
        pps = figures["points_per_second"]
        pps[f"{dev.type}_float32"] = points_per_second(net, code, dev)
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            pps["cuda_tf32"] = points_per_second(net, code, dev)
            torch.backends.cuda.matmul.allow_tf32 = False
            pps["cuda_bf16"] = points_per_second(net, code, dev, torch.bfloat16)
        one = sd.__class__(**{**sd.__dict__, "intensity": sd.intensity[:1],
                              "frame_times": sd.frame_times[:1]})
        times = []
        for _ in range(5):  # the slider's figure: median of 5 (a shared machine is noisy)
            t0 = time.perf_counter()
            labels, _, _, _ = sample_fields(net, code, one, 4, dev, None)
            times.append(time.perf_counter() - t0)
        figures[f"{dev.type}_one_frame_z4_s"] = round(float(np.median(times)), 3)
        figures[f"{dev.type}_one_frame_z4_s_min_max"] = [round(min(times), 3),
                                                         round(max(times), 3)]
        t0 = time.perf_counter()
        sample_fields(net, code, sd, 4, dev, None)
        figures[f"{dev.type}_all_{sd.n_frames}_frames_z4_s"] = round(time.perf_counter() - t0, 3)
        figures["grid_z4_points_per_frame"] = int(np.prod(labels.shape[1:]))
    record("sampling", figures)


if __name__ == "__main__":
    main()
