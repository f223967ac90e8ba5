"""Time of the bundled slice network per slice, by the number of slices per call (the batch
``refinement.slice_evidence.SLICES_PER_BATCH`` chooses), and of a whole frame with one view and
with the four mirror views (``slice_probabilities(..., flips=True)``).

    python benchmarks/slice_net_speed.py [--batches 4 8 16 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import record

from nimosef_engine.model.bundled import load_slice_net
from nimosef_engine.model.slice_unet import FIELD_MM, GRID_PX
from nimosef_engine.refinement.slice_evidence import SLICES_PER_BATCH, slice_probabilities


def seconds(fn, repeats: int) -> float:
    """Mean wall time of ``fn()`` over ``repeats`` calls after one warm-up call (s)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slices", type=int, default=10, help="slices of the timed frame")
    args = ap.parse_args()
    net, net_id = load_slice_net()
    per_slice = {}
    with torch.inference_mode():
        for b in args.batches:
            x = torch.randn(b, 1, GRID_PX, GRID_PX)
            per_slice[str(b)] = round(1000 * seconds(lambda x=x: net(x), args.repeats) / b, 2)
            print(f"{b} slices per call: {per_slice[str(b)]} ms per slice", flush=True)
    shape = (GRID_PX, GRID_PX, args.slices)  # a frame on the network's own grid
    frame = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    spacing = FIELD_MM / GRID_PX
    one = seconds(lambda: slice_probabilities(net, frame, spacing), args.repeats)
    four = seconds(lambda: slice_probabilities(net, frame, spacing, flips=True), args.repeats)
    record("slice_net_speed", {"slice_net_id": net_id, "ms_per_slice_by_batch": per_slice,
                               "slices_per_batch": SLICES_PER_BATCH, "frame_slices": args.slices,
                               "frame_seconds_one_view": round(one, 3),
                               "frame_seconds_four_views": round(four, 3)})


if __name__ == "__main__":
    main()
