"""``nimosef preprocess``: ACDC or BIDS-like dataset -> ``derivatives/implicit`` + manifests."""

from __future__ import annotations

import argparse
import logging

from nimosef_engine.core.progress import cancel_on_signals, make_reporter
from nimosef_engine.data.manifest import DEFAULT_FRACTIONS, dataset_manifest_path
from nimosef_engine.data.preprocess import preprocess_dataset
from nimosef_engine.data.roi import ROI_MM

log = logging.getLogger(__name__)


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "preprocess", help="preprocess a dataset (ROI crop, heart frame, intensities, splits)",
        description="Crop each subject around the heart, place its heart frame, scale "
                    "intensities to [0, 1] and write OUT/derivatives/implicit and "
                    "OUT/derivatives/manifests_nimosef (seeded train/val/test splits).")
    p.add_argument("--layout", choices=["acdc", "bids"], required=True)
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--out", default=None,
                   help="output folder holding derivatives/ (default ROOT; required for acdc)")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--fractions", type=float, nargs=3, default=list(DEFAULT_FRACTIONS),
                   metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--roi-mm", type=float, default=ROI_MM,
                   help="in-plane ROI size (mm) when the dataset has no ROI crop")
    p.add_argument("--norm-scale-mm", type=float, default=100.0,
                   help="heart-frame mm per normalised unit")
    p.add_argument("--subjects", nargs="+", default=None, metavar="ID",
                   help="only these subjects (sub-001 or patient001)")
    p.add_argument("--holdout", nargs="*", default=[], metavar="ID",
                   help="subjects forced into the test split (never trained on)")
    p.add_argument("--progress", choices=["tqdm", "json", "none"], default="tqdm")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    reporter = make_reporter(args.progress)
    with cancel_on_signals(reporter):
        manifest = preprocess_dataset(
            args.layout, args.root, args.out, seed=args.seed, fractions=args.fractions,
            roi_mm=args.roi_mm, norm_scale_mm=args.norm_scale_mm, subjects=args.subjects,
            holdout=args.holdout, reporter=reporter)
    sizes = {k: len(v) for k, v in manifest["splits"].items()}
    log.info("preprocessed %d subjects -> %s (splits %s)", len(manifest["subjects"]),
             dataset_manifest_path(manifest["root"]), sizes)
    return 0
