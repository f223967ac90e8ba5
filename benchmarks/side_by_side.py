"""Two Segment & Track runs side by side on a busy CPU: how much slower than one alone.

    python benchmarks/side_by_side.py [--policies ACTIVE PASSIVE spin:20000] [--fit-steps 60]
        [--threads 0] [--no-record]

For each OpenMP wait policy (``OMP_WAIT_POLICY``: ``ACTIVE`` threads spin while waiting for
work, ``PASSIVE`` threads sleep; ``spin:N``: libgomp's ``GOMP_SPINCOUNT=N``, spin N times
then sleep), one ``nimosef segment-track`` of a real ACDC ED/ES pair
(patient001 of tests/data; fast preset, ``--fit-steps``, no meshes, no dense motion, z factor
1) runs alone, then two run at once. Each run is its own process, timed from start to exit.
``ratio`` is the mean wall time of the two concurrent runs over the lone run's: about 2 on a
machine whose cores the two share fairly, far more when spinning threads steal each other's
time. ``--threads N`` sets each run's torch threads (0: torch's default, one per core).
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, TEST_ACDC, record

PAIR = [TEST_ACDC / "patient001" / "patient001_frame01.nii.gz",
        TEST_ACDC / "patient001" / "patient001_frame12.nii.gz"]


def command(out: Path, fit_steps: int) -> list[str]:
    return [sys.executable, "-m", "nimosef_engine", "segment-track", *map(str, PAIR),
            "--frame-numbers", "1", "12", "--n-frames", "30", "--out", str(out),
            "--quality", "fast", "--fit-steps", str(fit_steps), "--res-factor-z", "1",
            "--no-meshes", "--no-motion", "--device", "cpu", "--progress", "none", "--force"]


def run_together(n: int, policy: str, threads: int, fit_steps: int) -> list[float]:
    """Start ``n`` runs at once; the wall time (s) of each from start to exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GOMP_SPINCOUNT", None)
    if policy.startswith("spin:"):  # libgomp: spin this many times, then sleep
        env["GOMP_SPINCOUNT"] = policy.removeprefix("spin:")
        env.pop("OMP_WAIT_POLICY", None)
    else:
        env["OMP_WAIT_POLICY"] = policy
    with tempfile.TemporaryDirectory(prefix="nimosef_side_") as tmp:
        procs = []
        for i in range(n):
            t0 = time.perf_counter()
            cmd = command(Path(tmp) / f"run{i}", fit_steps) + \
                (["--threads", str(threads)] if threads else [])
            procs.append((t0, subprocess.Popen(cmd,
                                               env=env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE, text=True)))
        walls = []
        for t0, proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"segment-track failed ({proc.returncode}): {err.strip()}")
            walls.append(round(time.perf_counter() - t0, 2))
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", nargs="+", default=["ACTIVE", "PASSIVE"])
    ap.add_argument("--fit-steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0: default)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    rows = []
    for policy in args.policies:
        alone = run_together(1, policy, args.threads, args.fit_steps)[0]
        pair = run_together(2, policy, args.threads, args.fit_steps)
        row = {"policy": policy, "alone_s": alone, "side_by_side_s": pair,
               "ratio": round(sum(pair) / len(pair) / alone, 2)}
        print(row, flush=True)
        rows.append(row)
    figures = {"cores": os.cpu_count(), "fit_steps": args.fit_steps,
               "threads_per_run": args.threads or "default", "runs": rows}
    if args.no_record:
        print(figures)
    else:
        record("side_by_side", figures)


if __name__ == "__main__":
    main()
