"""How long Ctrl-C takes to stop ``nimosef segment-track``, in each stage.

For each stage asked for, a fresh ``segment-track`` of the demo cine runs with JSON progress;
``--delay`` seconds after the stage's first progress line it gets SIGINT, and the seconds until
the process has exited are measured, and those until it printed that it was cancelled (the
job stopped and cleaned up; the rest is the interpreter shutting down). Each run must exit
with 130 and leave the output's folder empty (no output, no lock, no partial folder).

    python benchmarks/cancel_latency.py [--stages localise fit align sample write]
        [--delay 1.5] [--fit-steps 40] [--quality standard] [--no-record]

Prints one line per stage and records the figures (the worst one as ``max_s``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, TEST_ACDC, record

CINE = TEST_ACDC / "patient090" / "patient090_4d.nii.gz"


def cancel_in(stage: str, delay: float, fit_steps: int, quality: str) -> dict:
    """Run segment-track, SIGINT ``delay`` s into ``stage``; seconds to exit, rc, leftovers."""
    work = Path(tempfile.mkdtemp(prefix="nimosef_cancel_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimosef_engine", "segment-track", str(CINE), "--out",
         str(work / "out"), "--quality", quality, "--fit-steps", str(fit_steps),
         "--device", "cpu", "--progress", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work)
    seen = threading.Event()
    said: list[float] = []

    def watch():
        for line in proc.stdout:
            try:
                if json.loads(line).get("stage") == stage:
                    seen.set()
            except ValueError:
                pass

    def listen():
        for line in proc.stderr:
            if "cancelled" in line and not said:
                said.append(time.monotonic())

    threading.Thread(target=watch, daemon=True).start()
    threading.Thread(target=listen, daemon=True).start()
    while not seen.wait(0.05):
        if proc.poll() is not None:
            raise RuntimeError(f"segment-track ended (rc {proc.returncode}) before {stage}")
    time.sleep(delay)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=300)
    seconds = time.monotonic() - t0
    time.sleep(0.2)  # the stderr reader's last line
    left = sorted(p.name for p in work.iterdir())
    return {"stage": stage, "seconds": round(seconds, 2),
            "to_message_s": round(said[0] - t0, 2) if said else None, "rc": rc,
            "left_behind": left}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="+", default=["localise", "fit", "align", "sample",
                                                     "write"])
    ap.add_argument("--delay", type=float, default=1.5, help="seconds into the stage")
    ap.add_argument("--fit-steps", type=int, default=40)
    ap.add_argument("--quality", default="standard")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    rows = []
    for stage in args.stages:
        rows.append(cancel_in(stage, args.delay, args.fit_steps, args.quality))
        print(json.dumps(rows[-1]), flush=True)
    figures = {"cine": str(CINE.relative_to(ROOT)), "delay_s": args.delay,
               "fit_steps": args.fit_steps, "quality": args.quality,
               "load_average": os.getloadavg()[0], "runs": rows,
               "max_s": max(r["seconds"] for r in rows)}
    if not args.no_record:
        record("cancel_latency", figures)
    else:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
