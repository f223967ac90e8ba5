"""What the Slicer z slider costs the user: ``nimosef resample`` as the module runs it.

    python benchmarks/slider_preview.py [--factor 4] [--repeats 3] [--device cpu]

Fits the demo cine once (``segment-track --quality fast``: the fit's quality does not change
the sampling time), then runs the resample command in a fresh process, as the module does,
with and without ``--first-frame``. Figures (medians over ``--repeats``, seconds from the
process launch): when the frame on screen is ready (the ``preview`` progress line) and when
the whole cine is written. The process start (imports, prior loading) is included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, record

CINE = ROOT / "tests" / "data" / "acdc" / "patient090" / "patient090_4d.nii.gz"


def engine(*args: str) -> list[str]:
    return [sys.executable, "-m", "nimosef_engine", *args]


def timed_resample(subject: Path, out: Path, factor: int, device: str,
                   first_frame: int | None) -> dict[str, float]:
    """Seconds from launch to the ``preview`` line (if asked for) and to the exit."""
    cmd = engine("resample", str(subject), "--res-factor-z", str(factor), "--out", str(out),
                 "--device", device, "--progress", "json")
    if first_frame is not None:
        cmd += ["--first-frame", str(first_frame)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    times: dict[str, float] = {}
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line).get("stage") == "preview":
            times["preview_s"] = time.perf_counter() - t0
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}")
    times["whole_s"] = time.perf_counter() - t0
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        fitted = Path(work) / "fit"
        subprocess.run(engine("segment-track", str(CINE), "--out", str(fitted), "--quality",
                              "fast", "--no-meshes", "--res-factor-z", "1", "--device",
                              args.device, "--progress", "none"), check=True, cwd=ROOT)
        subject = fitted / "subject.nimosef"
        n_frames = len(json.loads((fitted / "summary.json").read_text())["model_times"])
        runs: dict[str, list[dict[str, float]]] = {"whole_cine": [], "frame_first": []}
        for i in range(args.repeats):
            runs["whole_cine"].append(timed_resample(subject, Path(work) / f"a{i}",
                                                     args.factor, args.device, None))
            runs["frame_first"].append(timed_resample(subject, Path(work) / f"b{i}",
                                                      args.factor, args.device, n_frames // 2))
    figures = {"cine": CINE.name, "n_frames": n_frames, "res_factor_z": args.factor,
               "repeats": args.repeats}
    for name, rows in runs.items():
        for key in rows[0]:
            values = [r[key] for r in rows]
            figures[f"{name}_{key}_median"] = round(statistics.median(values), 2)
            figures[f"{name}_{key}_range"] = [round(min(values), 2), round(max(values), 2)]
    record("slider_preview", figures)


if __name__ == "__main__":
    main()
