"""Peak memory and wall time of segment-track on a long, fine cine at z factor 4 (issue 6).

    python benchmarks/streaming_memory.py --sunnybrook SCD0000101_FOLDER [--budgets 4 2]
        [--quality fast] [--factor 4]

The cine is real data made 256x256x20 slices x 30 frames: the Sunnybrook DICOM series
SCD0000101 (256x256, 12 slices x 20 phases) is
  * split along z with ``geometry.resample_grid_z(affine, shape, 2)`` (each slice halved, same
    slab), intensities interpolated linearly between slice centres (``geometry.new_to_old_k``,
    clamped at the ends); the middle 20 slices are kept (``geometry.crop_affine``);
  * resampled in time to 30 frames by cyclic linear interpolation of the 20 phases, the frame
    spacing being the cycle length / 30;
and written as a float32 4D NIfTI (``save_nifti``). Each run is ``nimosef segment-track`` in
its own process; its peak resident memory is the child's ``ru_maxrss`` from ``os.wait4``.
``--budgets none`` runs without the option (for an engine that predates it, e.g. the previous
commit on ``PYTHONPATH``; the children run in a temporary folder so that the current folder
does not shadow it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, record

from nimosef_engine.core.geometry import crop_affine, new_to_old_k, resample_grid_z
from nimosef_engine.io.cine import load_cine
from nimosef_engine.io.nifti import save_nifti

N_SLICES, N_FRAMES = 20, 30


def build_cine(out: Path, src: Path) -> tuple[Path, str]:
    """Write the 256x256x20x30 cine described in the module docstring; returns its path and
    the source series."""
    cine = load_cine([src])
    frames = cine.frames.astype(np.float32)  # (T, X, Y, Z)
    n_t, n_z = frames.shape[0], frames.shape[3]
    aff2, shape2 = resample_grid_z(cine.affine_ras, cine.shape, 2)
    first = (shape2[2] - N_SLICES) // 2
    if first < 0:
        raise SystemExit(f"{src}: {n_z} slices; the benchmark needs >= {N_SLICES // 2} (the "
                         "full SCD0000101 series: --sunnybrook)")
    src_k = np.clip(new_to_old_k(np.arange(first, first + N_SLICES), 2), 0, n_z - 1)
    aff = crop_affine(aff2, (0, 0, first))
    k0 = np.floor(src_k).astype(int)
    k1 = np.minimum(k0 + 1, n_z - 1)
    wk = (src_k - k0).astype(np.float32)
    phase = np.arange(N_FRAMES) * n_t / N_FRAMES
    t0 = np.floor(phase).astype(int)
    t1 = (t0 + 1) % n_t
    wt = (phase - t0).astype(np.float32)
    out_4d = np.empty((*frames.shape[1:3], N_SLICES, N_FRAMES), np.float32)
    for i in range(N_FRAMES):
        f = (1 - wt[i]) * frames[t0[i]] + wt[i] * frames[t1[i]]
        out_4d[..., i] = (1 - wk) * f[:, :, k0] + wk * f[:, :, k1]
    tms = cine.trigger_times_ms
    cycle_ms = float(np.median(np.diff(tms))) * n_t if tms is not None and n_t > 1 else 1000.0
    path = out / "cine_256x256x20x30.nii.gz"
    save_nifti(path, out_4d, aff, cycle_ms / N_FRAMES)
    return path, f"Sunnybrook Cardiac Data {src.resolve().name}"


def run_one(cine: Path, budget: float | None, quality: str, factor: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "nimosef_engine", "segment-track", str(cine), "--out",
               str(out), "--quality", quality, "--device", "cpu", "--res-factor-z",
               str(factor), "--progress", "none"]
        if budget is not None:
            cmd += ["--memory-budget-gb", str(budget)]
        log = Path(tmp) / "stderr.txt"
        t0 = time.perf_counter()
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=tmp)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - t0
        err_text = log.read_text()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"segment-track failed: {err_text[-2000:]}")
        summary = json.loads((out / "summary.json").read_text())
        sizes = {p.name: round(p.stat().st_size / 2 ** 20, 1) for p in out.glob("*.nii.gz")}
    return {"budget_gb": budget, "wall_s": round(wall, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "engine_runtime_s": summary["runtime_s"], "stages_s": summary["stage_seconds"],
            "LV_EF_pct": summary["LV_EF_pct"], "output_mb": sizes,
            "chunk_log": [ln for ln in err_text.splitlines() if "chunks of" in ln]}


def engine_path() -> str:
    """Where the child processes import the engine from (PYTHONPATH may point elsewhere):
    relative to this checkout when inside it, else ``elsewhere`` (no machine path is
    recorded)."""
    found = Path(subprocess.run([sys.executable, "-c", "import nimosef_engine; "
                                 "print(nimosef_engine.__file__)"], capture_output=True,
                                text=True, cwd=tempfile.gettempdir()).stdout.strip())
    return str(found.relative_to(ROOT)) if found.is_relative_to(ROOT) else "elsewhere"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", nargs="+", default=["4", "2"],
                    help="GB per run; 'none' omits --memory-budget-gb")
    ap.add_argument("--quality", default="fast", help="fitting preset (sampling dominates)")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--sunnybrook", type=Path, required=True,
                    help="the SCD0000101 DICOM series of the Sunnybrook Cardiac Data")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cine, source = build_cine(Path(tmp), args.sunnybrook)
        runs = []
        for b in args.budgets:
            runs.append(run_one(cine, None if b == "none" else float(b), args.quality,
                                args.factor))
            print(json.dumps(runs[-1]), flush=True)
    record("streaming_memory", {"cine": f"{source} -> 256x256x20x30", "res_factor_z":
                                args.factor, "quality": args.quality,
                                "engine": engine_path(), "runs": runs})


if __name__ == "__main__":
    main()
