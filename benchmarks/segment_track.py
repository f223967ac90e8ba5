"""Segment & Track end to end, stage by stage: wall time and peak memory per cine.

    python benchmarks/segment_track.py [--quality standard] [--device auto] [--repeats 1]
        [--only acdc_patient090] [--no-meshes]

Cines: the bundled demo ACDC patient090 (12 frames) and the Sunnybrook DICOM cine (20 frames;
the full series with ``--sunnybrook DICOM_FOLDER``, else the 3-slice test subset). Each run is a
separate process; its ``peak_rss_mb`` is the largest resident memory of the runs so far
(``getrusage`` of children), so with ``--repeats`` a later run reports at least an earlier
one's. ``wall_s`` is that whole
process (interpreter start, imports, CUDA start-up included), ``engine_runtime_s`` the engine's
own clock from reading the cine to the last file. ``--repeats`` runs each cine again (a first
run pays cold file caches and, on a GPU, the driver's kernel loading). Targets (issue 6):
patient090 <= 120 s and <= 4 GB on the 2-core CPU, <= 15 s on an H100/H200. On the lent GPU
machine, run ``--only acdc_patient090 --no-meshes``: the VTK and SimpleITK wheels are too
large to carry there.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, record

SUNNY_TEST = ROOT / "tests" / "data" / "sunnybrook" / "dicoms" / "SCD0000101"
CINES = {
    "acdc_patient090": ROOT / "tests" / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz",
    "sunnybrook_SCD0000101": SUNNY_TEST,
}


def run_one(name: str, path: Path, quality: str, device: str, factor: int,
            meshes: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nimosef_engine", "segment-track",
                               str(path), "--out", str(out), "--quality", quality,
                               "--device", device, "--res-factor-z", str(factor),
                               "--progress", "none"] + ([] if meshes else ["--no-meshes"]),
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise SystemExit(f"{name}: segment-track failed: {proc.stderr[-2000:]}")
        summary = json.loads((out / "summary.json").read_text())
    return {"cine": name, "input": str(path.relative_to(ROOT.parent)), "frames":
            summary["n_frames"], "wall_s": round(wall, 2), "engine_runtime_s":
            summary["runtime_s"], "stages_s": summary["stage_seconds"],
            "peak_rss_mb": round(max(peak, before) / 1024, 1), "device": summary["device"],
            "LV_EF_pct": summary["LV_EF_pct"], "fit_steps": summary["fit"]["steps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quality", default="standard")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--res-factor-z", type=int, default=2)
    ap.add_argument("--only", choices=list(CINES))
    ap.add_argument("--repeats", type=int, default=1, help="runs per cine, all recorded")
    ap.add_argument("--no-meshes", action="store_true")
    ap.add_argument("--sunnybrook", type=Path,
                    help="the full SCD0000101 DICOM series of the Sunnybrook Cardiac Data "
                         "(default: its 3-slice subset in tests/data)")
    args = ap.parse_args()
    if args.sunnybrook:
        CINES["sunnybrook_SCD0000101"] = args.sunnybrook
    runs = [{**run_one(n, p, args.quality, args.device, args.res_factor_z, not args.no_meshes),
             "run": i + 1}
            for n, p in CINES.items() if args.only in (None, n)
            for i in range(max(1, args.repeats))]
    record("segment_track", {"quality": args.quality, "res_factor_z": args.res_factor_z,
                             "meshes": not args.no_meshes, "runs": runs})


if __name__ == "__main__":
    main()
