"""``nimosef split``: recompute the train/val/test lists of a preprocessed dataset."""

from __future__ import annotations

import argparse
import logging

from nimosef_engine.data.manifest import dataset_manifest_path, resplit

log = logging.getLogger(__name__)


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "split", help="regenerate the train/val/test splits of dataset_manifest.json",
        description="Rewrite only the splits of ROOT/derivatives/manifests_nimosef/"
                    "dataset_manifest.json. Options left out keep the manifest's values.")
    p.add_argument("--root", required=True, help="folder holding derivatives/")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--fractions", type=float, nargs=3, default=None,
                   metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--holdout", nargs="*", default=None, metavar="ID",
                   help="subjects forced into test (give no ID to clear the stored list)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    manifest = resplit(args.root, args.seed, args.fractions, args.holdout)
    sizes = {k: len(v) for k, v in manifest["splits"].items()}
    log.info("%s: seed %d, splits %s, holdout %s", dataset_manifest_path(args.root),
             manifest["seed"], sizes, manifest["holdout"])
    return 0
