"""``nimosef segment-track-batch``: Segment & Track a cohort on a Dask cluster, resumable.

Exit codes: 0 every subject of the manifest is done; 3 some failed (each recorded with its
one-line error in ``DIR/failures.json`` and the cohort table; the others finished); 2 bad
arguments or manifest (nothing written); 130 cancelled (the subjects done are kept and
listed in the cohort table). One summary line goes to stderr, and the summary as one JSON
line to stdout unless ``--progress json``.
"""

from __future__ import annotations

import argparse
import json
import sys

from nimosef_engine.commands.segment_track import add_segment_track_arguments, options_from_args
from nimosef_engine.core.errors import NimosefCancelled
from nimosef_engine.core.progress import cancel_on_signals, make_reporter

EXIT_SOME_FAILED = 3
EXIT_CANCELLED = 130


def register(sub) -> None:
    p = sub.add_parser(
        "segment-track-batch", help="segment-track every cine of a cohort (CSV or folder)",
        description="Segment & Track every subject of a manifest on a Dask cluster (a local "
                    "one by default), into DIR/subjects/<subject>/, with one table of the "
                    "cohort (DIR/cohort.parquet, DIR/cohort.csv). Resumable: subjects done "
                    "are skipped, failed ones are retried with --retry-failed. Exit code 0 "
                    "when every subject is done, 3 when some failed, 2 for a bad manifest. "
                    "Research software, not a medical device.")
    p.add_argument("manifest", help="a CSV file (columns subject, inputs and optionally "
                                    "frame_times, frame_numbers, n_frames, ed_frame, series; "
                                    "paths relative to it) or a folder of cines (4D NIfTI, "
                                    ".nrrd/.seq.nrrd, DICOM subfolders)")
    p.add_argument("--out", required=True,
                   help="batch folder (new, empty, or an earlier batch's to resume it)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the subjects recorded as failed (DIR/failures.json)")
    p.add_argument("--address", help="an existing Dask scheduler (tcp://host:8786) instead of "
                                     "a local cluster; its workers must import the engine and "
                                     "see the inputs and DIR at the same paths")
    p.add_argument("--workers", type=int,
                   help="local worker processes (default: from the cores and memory; one "
                        "per GPU)")
    p.add_argument("--threads-per-worker", type=int,
                   help="threads of each local worker, used by torch for its subject "
                        "(default: the cores shared among the workers)")
    p.add_argument("--retries", type=int, default=1,
                   help="reruns of a subject whose worker died or whose run raised an error "
                        "other than bad input (default %(default)s)")
    add_segment_track_arguments(
        p, overwrite_help="run every subject again, those done included (their folders are "
                          "replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nimosef_engine.pipeline.batch import ClusterSettings, segment_track_batch

    options = options_from_args(args)
    cluster = ClusterSettings(address=args.address, workers=args.workers,
                              threads_per_worker=args.threads_per_worker, retries=args.retries)
    reporter = make_reporter(args.progress)
    try:
        with cancel_on_signals(reporter):
            summary = segment_track_batch(args.manifest, args.out, reporter, options,
                                          cluster=cluster, retry_failed=args.retry_failed)
    except NimosefCancelled as exc:
        reporter.close()
        print(f"nimosef segment-track-batch: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    if args.progress != "json":
        print(json.dumps(summary))
    print(f"nimosef segment-track-batch: {summary_line(summary)}", file=sys.stderr)
    return EXIT_SOME_FAILED if summary["failed"] else 0


def summary_line(summary: dict) -> str:
    """One line: how many subjects are done and failed, the first failures, where to look."""
    line = f"{summary['done']} of {summary['subjects']} subjects done"
    if summary["failed"]:
        names = list(summary["failures"])
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        first = summary["failures"][names[0]]
        line += (f", {summary['failed']} failed ({shown}; {names[0]}: {first}); see "
                 f"{summary['out']}/failures.json, --retry-failed runs them again")
    pending = summary["subjects"] - summary["done"] - summary["failed"]
    if pending:
        line += f", {pending} not run"
    return f"{line}; cohort table {summary['out']}/cohort.csv"
