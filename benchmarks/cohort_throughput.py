"""Cohort throughput of ``nimosef segment-track-batch``: cines per hour and seconds per subject
on a local Dask cluster.

    python benchmarks/cohort_throughput.py [--root ACDC_ROOT] [--subjects 3] [--workers W]
        [--threads-per-worker T] [--quality standard] [--fit-steps K] [--input pair|4d]
        [--res-factor-z 2] [--no-meshes] [--no-motion] [--notes TEXT]

Subjects: the patients of an ACDC-layout folder (``--root``, default the bundled
``tests/data/acdc``), in name order, each its ED/ES frames (``--input pair``, with their frame
numbers, as ``nimosef evaluate`` reads them) or its whole cine ``patientXXX_4d.nii.gz``
(``--input 4d``; patients without one are left out). With fewer patients than
``--subjects``, the list is repeated as copies (``patient001_copy2``, ...), each fitted in
full. Without ``--workers`` / ``--threads-per-worker`` the cluster is laid out from the core
count, as the command does (``pipeline.batch.local_layout``).

``wall_s`` is the whole batch, from reading the manifest to the last table, the local
cluster's start and stop included; ``cines_per_hour`` = subjects done / ``wall_s`` x 3600;
``wall_s_per_subject`` its inverse; ``subject_runtime_s`` the engine's own clock of each
subject (``summary.json`` ``runtime_s``), which runs concurrently on the workers. The load
average at the start is recorded: on a shared machine the figures are not the machine's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import ROOT, TEST_ACDC, record


def acdc_rows(root: Path, n: int, kind: str) -> list[str]:
    """``n`` CSV rows (subject, inputs, frame_numbers, n_frames) of the ACDC folder ``root``."""
    from nimosef_engine.data.acdc import parse_info_cfg

    rows = []
    for folder in sorted(p for p in root.glob("patient*") if (p / "Info.cfg").is_file()):
        pid = folder.name
        if kind == "4d":
            cine = folder / f"{pid}_4d.nii.gz"
            if cine.is_file():
                rows.append((pid, f"{pid},{cine},,"))
            continue
        info = parse_info_cfg(folder / "Info.cfg")
        frames = ";".join(str(folder / f"{pid}_frame{k:02d}.nii.gz") for k in (info.ed, info.es))
        rows.append((pid, f"{pid},{frames},{info.ed} {info.es},{info.nb_frame}"))
    if not rows:
        raise SystemExit(f"no ACDC patients ({kind}) in {root}")
    out = []
    for i in range(n):
        pid, row = rows[i % len(rows)]
        copy = i // len(rows)
        out.append(row if copy == 0 else row.replace(pid, f"{pid}_copy{copy + 1}", 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(TEST_ACDC), help="an ACDC-layout folder")
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--input", choices=["pair", "4d"], default="pair")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--threads-per-worker", type=int)
    ap.add_argument("--quality", default="standard")
    ap.add_argument("--fit-steps", type=int)
    ap.add_argument("--res-factor-z", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-meshes", action="store_true")
    ap.add_argument("--no-motion", action="store_true")
    ap.add_argument("--notes", default="", help="recorded with the figures (e.g. the load)")
    args = ap.parse_args()

    from nimosef_engine.pipeline.batch import ClusterSettings, segment_track_batch

    root = Path(args.root)
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="nimosef_cohort_") as tmp:
        manifest = Path(tmp) / "cohort.csv"
        manifest.write_text("subject,inputs,frame_numbers,n_frames\n"
                            + "\n".join(acdc_rows(root, args.subjects, args.input)) + "\n")
        t0 = time.perf_counter()
        summary = segment_track_batch(
            manifest, Path(tmp) / "out",
            cluster=ClusterSettings(workers=args.workers,
                                    threads_per_worker=args.threads_per_worker),
            quality=args.quality, fit_steps=args.fit_steps, res_factor_z=args.res_factor_z,
            device=args.device, meshes=not args.no_meshes, motion=not args.no_motion)
        wall = time.perf_counter() - t0
        import pandas as pd

        table = pd.read_parquet(summary["cohort"])
    done = table[table["status"] == "done"]
    runtimes = [round(float(x), 2) for x in done["runtime_s"]]
    where = str(root.resolve().relative_to(ROOT)) if root.resolve().is_relative_to(ROOT) \
        else str(root)
    ran = summary["done"]
    record("cohort_throughput", {  # the headline figures first: the page shows 12 columns
        "cines_per_hour": round(ran / wall * 3600, 1) if ran else 0.0,
        "wall_s_per_subject": round(wall / ran, 2) if ran else None,
        "mean_subject_runtime_s": round(sum(runtimes) / len(runtimes), 2) if runtimes else None,
        "wall_s": round(wall, 2), "subjects": args.subjects, "done": ran,
        "failed": summary["failed"], "cluster": summary["cluster"], "quality": args.quality,
        "fit_steps": args.fit_steps, "load_average_at_start": load, "notes": args.notes,
        "res_factor_z": args.res_factor_z, "meshes": not args.no_meshes,
        "motion": not args.no_motion, "input": args.input, "root": where,
        "subject_runtime_s": runtimes, "cpu_count": os.cpu_count()})


if __name__ == "__main__":
    main()
