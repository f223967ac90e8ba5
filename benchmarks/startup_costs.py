"""What a fresh process pays before its first useful step, each in its own new interpreter:
importing torch, starting the device, the first step of ``torch.optim.Adam`` and of the fit's
own Adam (``nimosef_engine.fitting.adam``; and whether ``torch._dynamo`` was imported by then), and
importing the segment-track command.

    python benchmarks/startup_costs.py [--device auto|cpu|cuda] [--repeats 3]

Prints the median seconds of each (``--repeats`` fresh processes) and records them.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys

import torch
from common import ROOT, record

PROBE = r"""
import sys, time
t = time.perf_counter()
import torch
out = {"import_torch": time.perf_counter() - t}
dev = torch.device(sys.argv[1])
t = time.perf_counter()
x = torch.zeros(4, device=dev)
if dev.type == "cuda":
    torch.cuda.synchronize()
out["device_start"] = time.perf_counter() - t
def first_step(make):
    p = torch.nn.Parameter(torch.ones(8, device=dev))
    opt = make([{"params": [p], "lr": 1e-3}])
    (p * 2).sum().backward()
    t = time.perf_counter()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t
if sys.argv[2] == "torch":
    out["first_step_torch_optim_adam"] = first_step(torch.optim.Adam)
    out["dynamo_imported"] = "torch._dynamo" in sys.modules
else:
    from nimosef_engine.fitting.adam import Adam
    out["first_step_nimosef_adam"] = first_step(Adam)
    out["dynamo_imported"] = "torch._dynamo" in sys.modules
    t = time.perf_counter()
    import nimosef_engine.commands.segment_track  # noqa: F401
    out["import_segment_track_command"] = time.perf_counter() - t
print(repr(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    runs: dict[str, list] = {}
    for _ in range(max(1, args.repeats)):
        for which in ("torch", "nimosef"):
            proc = subprocess.run([sys.executable, "-c", PROBE, device, which], cwd=ROOT,
                                  capture_output=True, text=True, check=True)
            for k, v in ast.literal_eval(proc.stdout.strip().splitlines()[-1]).items():
                runs.setdefault(f"{which}:{k}" if k == "dynamo_imported" else k, []).append(v)
    figures = {k: (round(statistics.median(v), 3) if not isinstance(v[0], bool) else v[0])
               for k, v in runs.items()}
    record("startup_costs", {"probe_device": device, "repeats": args.repeats,
                             "median_s": figures})


if __name__ == "__main__":
    main()
