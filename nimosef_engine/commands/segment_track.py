"""``nimosef segment-track``: segment and track a new cine with no labels."""

from __future__ import annotations

import argparse
import json

from nimosef_engine.core.progress import cancel_on_signals, make_reporter
from nimosef_engine.pipeline.options import QUALITY_PRESETS, TIME_MODELS, SegmentTrackOptions
from nimosef_engine.pipeline.segment_track import segment_track

DEFAULTS = SegmentTrackOptions()


def register(sub) -> None:
    p = sub.add_parser(
        "segment-track", help="segment and track a cine with no labels",
        description="Segment LV, myocardium and RV in every frame of a short-axis cine, "
                    "track their motion, super-resolve along z and measure volumes. "
                    "Research software, not a medical device.")
    p.add_argument("inputs", nargs="+", help="a 4D NIfTI, 3D NIfTI frames in time order, a "
                                             "DICOM folder, or a .nrrd/.seq.nrrd sequence")
    p.add_argument("--out", required=True, help="output folder (must not exist)")
    add_segment_track_arguments(p)
    p.set_defaults(func=run)


def add_segment_track_arguments(
        p: argparse.ArgumentParser,
        overwrite_help: str = "replace an existing output folder") -> None:
    """Every option of a Segment & Track run (all but the inputs and ``--out``), with the
    defaults of :class:`SegmentTrackOptions`; :func:`options_from_args` reads them back.
    Shared by ``segment-track`` and ``segment-track-batch``."""
    p.add_argument("--prior", help="prior checkpoint (default: the bundled ACDC prior)")
    p.add_argument("--res-factor-z", type=int, default=DEFAULTS.res_factor_z,
                   help="slices per input slice (1-8)")
    p.add_argument("--device", default=DEFAULTS.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--quality", default=DEFAULTS.quality, choices=list(QUALITY_PRESETS))
    p.add_argument("--fit-steps", type=int, help="override the number of fitting steps")
    p.add_argument("--pose-hypotheses", type=int, default=DEFAULTS.pose_hypotheses,
                   help="experimental: fit from this many starting poses and keep the lowest "
                        "loss (the model card: not better on average on ACDC validation)")
    p.add_argument("--time-model", default=DEFAULTS.time_model, choices=list(TIME_MODELS),
                   help="where a cine's frames sit in the prior's cycle: read from each frame's "
                        "intensities (images), or linear between ED and ES with diastole as "
                        "systole reversed (landmarks); an ED/ES pair is the same either way")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--threads", type=int, default=DEFAULTS.threads,
                   help="CPU threads (default: one per core); with other jobs on the machine, "
                        "its share of the cores")
    p.add_argument("--frame-times", type=float, nargs="+",
                   help="cycle position (0-1) of each input frame")
    p.add_argument("--frame-numbers", type=int, nargs="+",
                   help="1-based frame number of each input frame (with --n-frames)")
    p.add_argument("--n-frames", type=int, help="frames in the full cycle")
    p.add_argument("--series", help="DICOM series (index, UID or description)")
    p.add_argument("--ed-frame", type=int, help="0-based end-diastole frame (default: found)")
    p.add_argument("--lv-center", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="LV centre hint, scanner RAS mm")
    p.add_argument("--rv-point", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="a point in the RV, scanner RAS mm")
    p.add_argument("--roi-mm", type=float, default=DEFAULTS.roi_mm,
                   help="side of the region around the heart (mm)")
    p.add_argument("--no-clean", action="store_true", help="keep raw label maps")
    p.add_argument("--no-refine", action="store_true",
                   help="labels from the network alone: its slices not shifted onto the image, "
                        "its labels not refined by the image's intensities")
    p.add_argument("--no-slice-net", action="store_true",
                   help="refine by the image's intensities alone, not by the slice network's "
                        "probabilities too")
    p.add_argument("--slice-net", help="slice network checkpoint (default: the bundled one)")
    p.add_argument("--no-meshes", action="store_true")
    p.add_argument("--no-motion", action="store_true",
                   help="skip the dense motion fields (motion/) and strain (strain.csv)")
    p.add_argument("--memory-budget-gb", type=float, default=DEFAULTS.memory_budget_gb,
                   help="memory the run may use (GB, default %(default)s): frames are streamed "
                        "to disk and sampled in chunks sized to stay within it")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--force", action="store_true",
                   help="keep a result whose quality verdict is fail (summary.json, quality)")
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")


def options_from_args(args: argparse.Namespace) -> SegmentTrackOptions:
    """The run's options from the parsed command line (checked as they are made)."""
    return SegmentTrackOptions(
        prior=args.prior, res_factor_z=args.res_factor_z, device=args.device,
        threads=args.threads, seed=args.seed,
        quality=args.quality, fit_steps=args.fit_steps, roi_mm=args.roi_mm,
        clean=not args.no_clean, refine=not args.no_refine, slice_net=not args.no_slice_net,
        slice_net_path=args.slice_net, meshes=not args.no_meshes, motion=not args.no_motion,
        overwrite=args.overwrite,
        frame_times=args.frame_times, frame_numbers=args.frame_numbers,
        n_frames=args.n_frames, series=args.series, lv_center=args.lv_center,
        rv_point=args.rv_point, ed_frame=args.ed_frame,
        memory_budget_gb=args.memory_budget_gb, pose_hypotheses=args.pose_hypotheses,
        time_model=args.time_model, force=args.force)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    reporter = make_reporter(args.progress)
    with cancel_on_signals(reporter):
        summary = segment_track(args.inputs, args.out, reporter, options)
    if args.progress != "json":
        keys = ("ed_frame", "es_frame", "LV_EDV_mL", "LV_ESV_mL", "LV_EF_pct", "RV_EF_pct",
                "MYO_mass_g", "runtime_s")
        print(json.dumps({**{k: summary.get(k) for k in keys},
                          "quality": summary["quality"]["verdict"]}))
    return 0
