"""``nimosef resample``: new super-resolved volumes of a fitted subject, no fitting."""

from __future__ import annotations

import argparse

from nimosef_engine.core.progress import cancel_on_signals, make_reporter
from nimosef_engine.pipeline.resample import resample_subject
from nimosef_engine.sampling.memory import DEFAULT_MEMORY_BUDGET_GB


def register(sub) -> None:
    p = sub.add_parser("resample", help="re-sample a fitted subject.nimosef at a new z factor")
    p.add_argument("subject", help="subject.nimosef written by segment-track")
    p.add_argument("--res-factor-z", type=int, required=True)
    p.add_argument("--out", required=True, help="folder for seg_zF.nii.gz and rec_zF.nii.gz")
    p.add_argument("--prior", help="prior checkpoint the subject was fitted with (default: the "
                                   "bundled prior; a path the subject file records is never "
                                   "followed)")
    p.add_argument("--slice-net", help="slice network the labels were refined with (default: "
                                       "the bundled one)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-clean", action="store_true")
    p.add_argument("--no-refine", action="store_true",
                   help="labels from the network alone (slices unshifted, not refined), even "
                        "if the subject file keeps the image to refine them with")
    p.add_argument("--memory-budget-gb", type=float, default=DEFAULT_MEMORY_BUDGET_GB,
                   help="memory the run may use (GB, default %(default)s): frames are streamed "
                        "to disk and sampled in chunks sized to stay within it")
    p.add_argument("--first-frame", type=int, metavar="K",
                   help="sample frame K (0-based) first and write it alone as "
                        "preview_zF.nii.gz, so a viewer can show it before the whole cine")
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reporter = make_reporter(args.progress)
    with cancel_on_signals(reporter):
        paths = resample_subject(args.subject, args.out, args.res_factor_z, args.prior,
                                 args.device, not args.no_clean, reporter,
                                 args.memory_budget_gb, args.first_frame,
                                 refine=not args.no_refine, slice_net=args.slice_net)
    reporter.close()
    if args.progress != "json":
        for p in paths.values():
            print(p)
    return 0
