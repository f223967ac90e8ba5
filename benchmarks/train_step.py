"""Training throughput: network points per second of one auto-decoder step (fwd+bwd+AdamW).

    python benchmarks/train_step.py [--root PREPROCESSED] [--steps 20] [--n-points 2000]

Runs on CPU, and on CUDA (float32 and bf16 autocast) when a GPU is present.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import preprocessed_test_data, record

from nimosef_engine.data.manifest import load_split
from nimosef_engine.losses.objective import LossWeights, subject_tensors
from nimosef_engine.model.network import ModelConfig
from nimosef_engine.training.augment import AugmentConfig, augmentation_table
from nimosef_engine.training.prior import AutoDecoder


def bench(subjects, device, amp: bool, steps: int, n_points: int, cfg: ModelConfig) -> dict:
    tensors = [subject_tensors(s, device) for s in subjects]
    model = AutoDecoder(cfg, augmentation_table(len(subjects), AugmentConfig(), 0)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    weights = LossWeights()
    counted = {"points": 0}

    net_forward = model.net.forward

    def counting_forward(coords, *a, **k):
        counted["points"] += coords.shape[0]
        return net_forward(coords, *a, **k)

    model.net.forward = counting_forward
    times = []
    for i in range(steps + 3):
        gen = torch.Generator().manual_seed(i)
        if i == 3:
            counted["points"] = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = model(tensors[i % len(tensors)], i % len(tensors), n_points, weights,
                            100, gen)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    total = sum(times)
    return {"device": str(device), "amp_bf16": amp, "steps": steps,
            "points_per_step": counted["points"] / steps,
            "seconds_per_step": round(total / steps, 4),
            "points_per_second": round(counted["points"] / total)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", help="preprocessed dataset (default: tests/data preprocessed)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n-points", type=int, default=2000)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--code-dim", type=int, default=64)
    args = ap.parse_args()
    root = args.root or preprocessed_test_data()
    subjects = load_split(root, "train")[:8]
    cfg = ModelConfig(width=args.width, depth=args.depth, code_dim=args.code_dim)
    runs = [bench(subjects, torch.device("cpu"), False, args.steps, args.n_points, cfg)]
    if torch.cuda.is_available():
        for amp in (False, True):
            runs.append(bench(subjects, torch.device("cuda"), amp, args.steps * 5,
                              args.n_points, cfg))
    record("train_step", {"model": cfg.to_dict(), "n_points": args.n_points, "runs": runs})


if __name__ == "__main__":
    main()
